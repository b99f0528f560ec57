//! The decision model's training loop, as the published `train_decision_model_*.py`:
//! BCE on the chosen attributes (mean over images and attributes), Adam, StepLR per epoch,
//! batch norm in train mode; per-attribute accuracy on a validation set after each epoch; a
//! checkpoint after each epoch and on request ([`Session::stop`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::activation::{relu, softplus};
use burn::tensor::{Device, Tensor, TensorData};
use steex_classifier::DecisionModel;
use steex_nn::TrainMode;

use crate::arch::Arch;
use crate::checkpoint::{self, CheckpointState, FORMAT};
use crate::data::{HostBatch, Loader, LoaderConfig, Sample};
use crate::error::TrainError;
use crate::params::TrainParams;

/// PyTorch's batch-norm momentum.
pub const BN_MOMENTUM: f64 = 0.1;

/// What to train and how (the published recipe: Adam lr 1e-4, StepLR(10, 0.5), batch 32,
/// 5 epochs).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierRecipe {
    /// The architecture.
    pub arch: Arch,
    /// Output names (the chosen attributes), one output each.
    pub names: Vec<String>,
    /// `(height, width)` the images are resized to.
    pub size: (usize, usize),
    /// Epochs in all.
    pub epochs: usize,
    /// Images per batch.
    pub batch: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// StepLR: the learning rate is multiplied by `gamma` every `step_size` epochs.
    pub step_size: usize,
    /// StepLR's factor.
    pub gamma: f64,
    /// Initialisation, shuffle and flip seed.
    pub seed: u64,
    /// Random horizontal flips.
    pub flip: bool,
    /// Reader threads.
    pub workers: usize,
    /// Fail on an image that cannot be read mid-epoch instead of skipping it.
    pub strict: bool,
}

impl ClassifierRecipe {
    /// The learning rate of epoch `epoch` (0-based): `lr * gamma^(epoch / step_size)`.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        self.lr * self.gamma.powi((epoch / self.step_size.max(1)) as i32)
    }

    /// The settings a resumed run must share with the run it continues.
    fn fingerprint(&self, samples: usize) -> BTreeMap<String, String> {
        [
            ("arch", format!("{:?}", self.arch)),
            ("names", self.names.join(",")),
            ("size", format!("{}x{}", self.size.0, self.size.1)),
            ("batch", self.batch.to_string()),
            ("lr", self.lr.to_string()),
            ("step_size", self.step_size.to_string()),
            ("gamma", self.gamma.to_string()),
            ("flip", self.flip.to_string()),
            ("samples", samples.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// Validation results of one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    /// Mean BCE.
    pub loss: f64,
    /// Share of images whose decision (logit > 0) matches the label, per output.
    pub accuracy: Vec<f64>,
}

/// What the loop reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An epoch starts (`first` batches of it already done, when resumed).
    EpochStart { epoch: usize, batches: usize, first: usize, lr: f64 },
    /// One step done.
    Step { epoch: usize, batch: usize, step: u64, loss: f32, lr: f64, images: usize, seconds: f64 },
    /// An image that could not be read was left out of its batch.
    Skipped { path: PathBuf, reason: String },
    /// An epoch is done (with its validation, if there is a validation set).
    EpochEnd { epoch: usize, loss: f32, validation: Option<Validation> },
    /// A checkpoint was written.
    Checkpoint { path: PathBuf, epoch: usize, batch: usize },
}

/// One training run: the data, where checkpoints go, and the stop request.
pub struct Session<'a> {
    /// Training samples.
    pub train: Arc<Vec<Sample>>,
    /// Validation samples (none: no validation).
    pub val: Option<Arc<Vec<Sample>>>,
    /// The checkpoint folder (replaced after each epoch).
    pub checkpoints: PathBuf,
    /// Continue from the checkpoint folder instead of starting afresh.
    pub resume: bool,
    /// Set (for example by a Ctrl-C handler) to write a checkpoint and stop after the
    /// current step with [`TrainError::Interrupted`].
    pub stop: &'a AtomicBool,
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

/// One training step: loss, backward, Adam, running statistics. Returns the loss.
pub fn train_step(
    params: &mut TrainParams,
    images: Tensor<4>,
    targets: Tensor<2>,
    lr: f64,
    device: &Device,
) -> Result<f32, TrainError> {
    let (loss, stats) = train_loss(params, images, targets, device)?;
    let value = steex_nn::host(loss.clone()).first().copied().unwrap_or(f32::NAN);
    if value.is_finite() {
        let grads = loss.backward();
        params.adam_step(&grads, lr);
        params.update_running_stats(&stats, BN_MOMENTUM)?;
    }
    Ok(value)
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
    let cfg = LoaderConfig {
        batch: recipe.batch,
        size: recipe.size,
        flip: false,
        seed: 0,
        workers: recipe.workers,
        ahead: 2,
    };
    let (mut loss, mut n, mut right) = (0f64, 0usize, vec![0usize; k]);
    // Epoch usize::MAX with seed 0: any fixed order does.
    for b in Loader::start(samples, cfg, 0, 0) {
        if b.len == 0 {
            continue;
        }
        let (x, y) = to_tensors(&b, recipe.size, k, device);
        let logits = model.logits(x).detach();
        loss += steex_nn::host(bce(logits.clone(), y))[0] as f64 * b.len as f64;
        for (i, l) in steex_nn::host(logits).iter().enumerate() {
            right[i % k] += ((*l > 0.0) == (b.targets[i] > 0.5)) as usize;
        }
        n += b.len;
    }
    let n = n.max(1) as f64;
    Ok(Validation { loss: loss / n, accuracy: right.iter().map(|&r| r as f64 / n).collect() })
}

/// Trains the decision model of `recipe` on the session's data; returns the trained
/// parameters (their metadata is the output file's).
pub fn train_classifier(
    recipe: &ClassifierRecipe,
    session: &Session<'_>,
    device: &Device,
    on_event: &mut dyn FnMut(Event),
) -> Result<TrainParams, TrainError> {
    let k = recipe.names.len();
    if recipe.batch == 0 || recipe.epochs == 0 {
        return Err(TrainError::Argument("--batch and --epochs must be at least 1".into()));
    }
    let fingerprint = recipe.fingerprint(session.train.len());
    let metadata = recipe.arch.metadata(&recipe.names);
    let (mut params, mut state) = if session.resume {
        let ck = checkpoint::load(&session.checkpoints)?;
        let differs: Vec<String> = fingerprint
            .iter()
            .filter(|(key, v)| ck.state.recipe.get(*key) != Some(v))
            .map(|(key, v)| format!("{key} {v} (checkpoint: {})", ck.state.recipe.get(key).map_or("none", |s| s)))
            .collect();
        if !differs.is_empty() || ck.state.seed != recipe.seed {
            return Err(TrainError::Checkpoint {
                path: session.checkpoints.clone(),
                reason: format!("written by another recipe: {}", differs.join("; ")),
            });
        }
        let mut p = TrainParams::new(&ck.weights.0, &metadata, device);
        p.import_adam(&ck.adam, ck.state.adam_steps, device)?;
        Arch::build(&p.weights_detached()?, device)?;
        (p, ck.state)
    } else {
        let p = TrainParams::new(&recipe.arch.init(k, recipe.seed), &metadata, device);
        let state = CheckpointState {
            format: FORMAT,
            epoch: 0,
            batch: 0,
            adam_steps: 0,
            seed: recipe.seed,
            last_epoch_loss: None,
            recipe: fingerprint,
        };
        (p, state)
    };
    let save = |params: &TrainParams, state: &CheckpointState, on_event: &mut dyn FnMut(Event)| {
        let (adam, steps) = params.export_adam();
        let state = CheckpointState { adam_steps: steps, ..state.clone() };
        checkpoint::save(&session.checkpoints, &params.export(), params.metadata(), &adam, &state)?;
        on_event(Event::Checkpoint { path: session.checkpoints.clone(), epoch: state.epoch, batch: state.batch });
        Ok::<_, TrainError>(())
    };
    let cfg = LoaderConfig {
        batch: recipe.batch,
        size: recipe.size,
        flip: recipe.flip,
        seed: recipe.seed,
        workers: recipe.workers,
        ahead: 2,
    };
    while state.epoch < recipe.epochs {
        let epoch = state.epoch;
        let lr = recipe.lr_at(epoch);
        let loader = Loader::start(session.train.clone(), cfg, epoch, state.batch);
        on_event(Event::EpochStart { epoch, batches: loader.batches(), first: state.batch, lr });
        let (mut sum, mut seen) = (0f64, 0usize);
        for b in loader {
            let t0 = Instant::now();
            for (path, reason) in &b.skipped {
                if recipe.strict {
                    return Err(TrainError::Image { path: path.clone(), reason: reason.clone() });
                }
                on_event(Event::Skipped { path: path.clone(), reason: reason.clone() });
            }
            if b.len > 0 {
                let (x, y) = to_tensors(&b, recipe.size, k, device);
                let loss = train_step(&mut params, x, y, lr, device)?;
                if !loss.is_finite() {
                    return Err(TrainError::Diverged { epoch: epoch + 1, step: b.index + 1, loss });
                }
                sum += loss as f64;
                seen += 1;
                let seconds = t0.elapsed().as_secs_f64();
                on_event(Event::Step { epoch, batch: b.index, step: params.steps(), loss, lr, images: b.len, seconds });
            }
            state.batch = b.index + 1;
            if session.stop.load(Ordering::SeqCst) {
                save(&params, &state, on_event)?;
                return Err(TrainError::Interrupted(session.checkpoints.clone()));
            }
        }
        let loss = if seen > 0 { (sum / seen as f64) as f32 } else { f32::NAN };
        let validation = match &session.val {
            Some(v) => Some(validate(&params, v.clone(), recipe, device)?),
            None => None,
        };
        on_event(Event::EpochEnd { epoch, loss, validation });
        state = CheckpointState { epoch: epoch + 1, batch: 0, last_epoch_loss: Some(loss), ..state };
        save(&params, &state, on_event)?;
    }
    Ok(params)
}

/// Writes trained parameters as the file `weights-convert densenet|resnet` writes (every
/// tensor in the published layout, the configuration in the metadata), atomically.
pub fn write_model(params: &TrainParams, out: &Path) -> Result<(), TrainError> {
    steex_io::write_bytes(out, &checkpoint::safetensors_bytes(&params.export(), params.metadata()))?;
    Ok(())
}
