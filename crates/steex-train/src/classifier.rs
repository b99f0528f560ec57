//! The decision model's training, as the published `train_decision_model_*.py`: BCE on the
//! chosen attributes (mean over images and attributes), Adam, StepLR per epoch, batch norm
//! in train mode; per-attribute accuracy on a validation set after each epoch (the loop:
//! [`crate::run`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use burn::tensor::activation::{relu, softplus};
use burn::tensor::{Device, Tensor, TensorData};
use steex_classifier::DecisionModel;
use steex_nn::TrainMode;

use steex_nn::BatchStats;

use crate::arch::Arch;
use crate::checkpoint;
use crate::data::{HostBatch, Loader, LoaderConfig, Sample};
use crate::error::TrainError;
use crate::params::{HostTensors, TrainParams};
pub use crate::run::{Common, Event, Session, Task, Validation};

pub use crate::run::BN_MOMENTUM;

/// What to train and how (the published recipe: Adam lr 1e-4, StepLR(10, 0.5), batch 32,
/// 5 epochs).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierRecipe {
    /// The architecture.
    pub arch: Arch,
    /// Output names (the chosen attributes), one output each.
    pub names: Vec<String>,
    /// Epochs, batch, learning-rate schedule, seed, flips, readers, size.
    pub common: Common,
}

/// Binary cross-entropy of logits `x` against targets `y` in [0, 1], averaged over every
/// element (`torch.nn.BCELoss()` of `sigmoid(x)`): `max(x, 0) - x y + log(1 + exp(-|x|))`.
pub fn bce(x: Tensor<2>, y: Tensor<2>) -> Tensor<1> {
    (relu(x.clone()) - x.clone() * y + softplus(x.abs().neg(), 1.0)).mean()
}

/// The loss of one batch in train mode (batch statistics), and the batch-norm statistics to
/// fold into the running ones.
pub fn train_loss(
    params: &TrainParams,
    images: Tensor<4>,
    targets: Tensor<2>,
    device: &Device,
) -> Result<(Tensor<1>, Vec<steex_nn::BatchStats>), TrainError> {
    let model = Arch::build(&params.weights()?, device)?;
    let mode = TrainMode::begin();
    let logits = model.logits(images);
    let stats = mode.finish();
    Ok((bce(logits, targets), stats))
}

fn to_tensors(b: &HostBatch, size: (usize, usize), k: usize, device: &Device) -> (Tensor<4>, Tensor<2>) {
    let images = Tensor::from_data(TensorData::new(b.images.clone(), [b.len, 3, size.0, size.1]), device);
    let targets = Tensor::from_data(TensorData::new(b.targets.clone(), [b.len, k]), device);
    (images, targets)
}

/// Loss and per-output accuracy of the model on `samples` (eval mode, running statistics).
pub fn validate(
    params: &TrainParams,
    samples: Arc<Vec<Sample>>,
    recipe: &ClassifierRecipe,
    device: &Device,
) -> Result<Validation, TrainError> {
    let model = Arch::build(&params.weights_detached()?, device)?;
    let k = recipe.names.len();
    let cfg = LoaderConfig { flip: false, ..recipe.common.loader() };
    let (mut loss, mut n, mut right) = (0f64, 0usize, vec![0usize; k]);
    // Any fixed order does.
    for b in Loader::start(samples, cfg, 0, 0) {
        if b.len == 0 {
            continue;
        }
        let (x, y) = to_tensors(&b, recipe.common.size, k, device);
        let logits = model.logits(x).detach();
        loss += steex_nn::host(bce(logits.clone(), y))[0] as f64 * b.len as f64;
        for (i, l) in steex_nn::host(logits).iter().enumerate() {
            right[i % k] += ((*l > 0.0) == (b.targets[i] > 0.5)) as usize;
        }
        n += b.len;
    }
    let n = n.max(1) as f64;
    let metrics =
        recipe.names.iter().zip(&right).map(|(name, &r)| (format!("accuracy.{name}"), r as f64 / n)).collect();
    Ok(Validation { loss: loss / n, metrics })
}

/// Trains the decision model of `recipe` on the session's data; returns the trained
/// parameters (their metadata is the output file's).
pub fn train_classifier(
    recipe: &ClassifierRecipe,
    session: &Session<'_>,
    device: &Device,
    on_event: &mut dyn FnMut(Event),
) -> Result<TrainParams, TrainError> {
    crate::run::train(recipe, session, device, on_event)
}

impl Task for ClassifierRecipe {
    fn common(&self) -> Common {
        self.common
    }

    fn fingerprint(&self) -> BTreeMap<String, String> {
        [("arch", format!("{:?}", self.arch)), ("names", self.names.join(","))]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        self.arch.metadata(&self.names)
    }

    fn init(&self) -> HostTensors {
        self.arch.init(self.names.len(), self.common.seed)
    }

    fn check(&self, params: &TrainParams, device: &Device) -> Result<(), TrainError> {
        Arch::build(&params.weights_detached()?, device).map(|_| ())
    }

    fn loss(
        &self,
        params: &TrainParams,
        b: &HostBatch,
        device: &Device,
    ) -> Result<(Tensor<1>, Vec<BatchStats>), TrainError> {
        let (x, y) = to_tensors(b, self.common.size, self.names.len(), device);
        train_loss(params, x, y, device)
    }

    fn validate(
        &self,
        params: &TrainParams,
        samples: Arc<Vec<Sample>>,
        device: &Device,
    ) -> Result<Validation, TrainError> {
        validate(params, samples, self, device)
    }
}

/// Writes trained parameters as the file `weights-convert densenet|resnet` writes (every
/// tensor in the published layout, the configuration in the metadata), atomically.
pub fn write_model(params: &TrainParams, out: &Path) -> Result<(), TrainError> {
    steex_io::write_bytes(out, &checkpoint::safetensors_bytes(&params.export(), params.metadata()))?;
    Ok(())
}
