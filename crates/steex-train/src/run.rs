//! The training loop every model shares: epochs of shuffled batches read ahead by the
//! [`Loader`], one Adam step per batch with batch norm in train mode, StepLR per epoch,
//! validation after each epoch, a checkpoint after each epoch and on request
//! ([`Session::stop`]), resume from a checkpoint. What differs per model (its tensors, its
//! loss, its metrics) is a [`Task`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::{Device, Tensor};
use steex_nn::BatchStats;

use crate::checkpoint::{self, CheckpointState, FORMAT};
use crate::data::{HostBatch, Loader, LoaderConfig, Sample};
use crate::error::TrainError;
use crate::params::{HostTensors, TrainParams};

/// PyTorch's batch-norm momentum.
pub const BN_MOMENTUM: f64 = 0.1;

/// The settings every task has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Common {
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
    /// `(height, width)` the images are resized to.
    pub size: (usize, usize),
}

impl Common {
    /// The learning rate of epoch `epoch` (0-based): `lr * gamma^(epoch / step_size)`.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        self.lr * self.gamma.powi((epoch / self.step_size.max(1)) as i32)
    }

    /// How the loader reads the training set.
    pub fn loader(&self) -> LoaderConfig {
        LoaderConfig {
            batch: self.batch,
            size: self.size,
            flip: self.flip,
            seed: self.seed,
            workers: self.workers,
            ahead: 2,
        }
    }
}

/// Validation results of one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    /// Mean loss.
    pub loss: f64,
    /// Named metrics (`accuracy.<attribute>`; `mean_iou`, `pixel_accuracy`).
    pub metrics: Vec<(String, f64)>,
}

/// What one model's training needs besides the loop.
pub trait Task {
    /// The shared settings.
    fn common(&self) -> Common;
    /// Settings a resumed run must share with the run it continues (besides [`Common`]'s).
    fn fingerprint(&self) -> BTreeMap<String, String>;
    /// The output file's metadata.
    fn metadata(&self) -> BTreeMap<String, String>;
    /// Initial tensor values (published layout).
    fn init(&self) -> HostTensors;
    /// Checks the parameters make the model.
    fn check(&self, params: &TrainParams, device: &Device) -> Result<(), TrainError>;
    /// The loss of a batch in train mode, and the batch-norm statistics it recorded.
    fn loss(
        &self,
        params: &TrainParams,
        b: &HostBatch,
        device: &Device,
    ) -> Result<(Tensor<1>, Vec<BatchStats>), TrainError>;
    /// Loss and metrics on validation samples (eval mode).
    fn validate(
        &self,
        params: &TrainParams,
        samples: Arc<Vec<Sample>>,
        device: &Device,
    ) -> Result<Validation, TrainError>;
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

/// One Adam step from a batch's loss, then the running statistics; returns the loss (not
/// finite: nothing is updated).
pub fn step(params: &mut TrainParams, loss: Tensor<1>, stats: &[BatchStats], lr: f64) -> Result<f32, TrainError> {
    let value = steex_nn::host(loss.clone()).first().copied().unwrap_or(f32::NAN);
    if value.is_finite() {
        let grads = loss.backward();
        params.adam_step(&grads, lr);
        params.update_running_stats(stats, BN_MOMENTUM)?;
    }
    Ok(value)
}

fn fingerprint(task: &dyn Task, samples: usize) -> BTreeMap<String, String> {
    let c = task.common();
    let mut f = task.fingerprint();
    for (k, v) in [
        ("size", format!("{}x{}", c.size.0, c.size.1)),
        ("batch", c.batch.to_string()),
        ("lr", c.lr.to_string()),
        ("step_size", c.step_size.to_string()),
        ("gamma", c.gamma.to_string()),
        ("flip", c.flip.to_string()),
        ("samples", samples.to_string()),
    ] {
        f.insert(k.to_string(), v);
    }
    f
}

/// Trains `task` on the session's data; returns the trained parameters (their metadata is
/// the output file's).
pub fn train(
    task: &dyn Task,
    session: &Session<'_>,
    device: &Device,
    on_event: &mut dyn FnMut(Event),
) -> Result<TrainParams, TrainError> {
    let c = task.common();
    if c.batch == 0 || c.epochs == 0 {
        return Err(TrainError::Argument("--batch and --epochs must be at least 1".into()));
    }
    let fingerprint = fingerprint(task, session.train.len());
    let metadata = task.metadata();
    let (mut params, mut state) = if session.resume {
        let ck = checkpoint::load(&session.checkpoints)?;
        let differs: Vec<String> = fingerprint
            .iter()
            .filter(|(key, v)| ck.state.recipe.get(*key) != Some(v))
            .map(|(key, v)| format!("{key} {v} (checkpoint: {})", ck.state.recipe.get(key).map_or("none", |s| s)))
            .collect();
        if !differs.is_empty() || ck.state.seed != c.seed {
            let mut differs = differs;
            if ck.state.seed != c.seed {
                differs.push(format!("seed {} (checkpoint: {})", c.seed, ck.state.seed));
            }
            return Err(TrainError::Checkpoint {
                path: session.checkpoints.clone(),
                reason: format!("written by another recipe: {}", differs.join("; ")),
            });
        }
        let mut p = TrainParams::new(&ck.weights.0, &metadata, device);
        p.import_adam(&ck.adam, ck.state.adam_steps, device)?;
        task.check(&p, device)?;
        (p, ck.state)
    } else {
        let p = TrainParams::new(&task.init(), &metadata, device);
        let state = CheckpointState {
            format: FORMAT,
            epoch: 0,
            batch: 0,
            adam_steps: 0,
            seed: c.seed,
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
    while state.epoch < c.epochs {
        let epoch = state.epoch;
        let lr = c.lr_at(epoch);
        let loader = Loader::start(session.train.clone(), c.loader(), epoch, state.batch);
        on_event(Event::EpochStart { epoch, batches: loader.batches(), first: state.batch, lr });
        let (mut sum, mut seen) = (0f64, 0usize);
        for b in loader {
            let t0 = Instant::now();
            for (path, reason) in &b.skipped {
                if c.strict {
                    return Err(TrainError::Image { path: path.clone(), reason: reason.clone() });
                }
                on_event(Event::Skipped { path: path.clone(), reason: reason.clone() });
            }
            if b.len > 0 {
                let (loss, stats) = task.loss(&params, &b, device)?;
                let loss = step(&mut params, loss, &stats, lr)?;
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
            Some(v) => Some(task.validate(&params, v.clone(), device)?),
            None => None,
        };
        on_event(Event::EpochEnd { epoch, loss, validation });
        state = CheckpointState { epoch: epoch + 1, batch: 0, last_epoch_loss: Some(loss), ..state };
        save(&params, &state, on_event)?;
    }
    Ok(params)
}
