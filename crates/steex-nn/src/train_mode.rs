//! Batch norms in train mode, as `torch.nn.BatchNorm2d.train()`: while a [`TrainMode`] is
//! active on the calling thread, every [`crate::BatchNorm2d`] normalises with the batch's
//! statistics (biased variance) instead of its running ones, and records the batch's mean
//! and unbiased variance under its scope name. The trainer then folds them into the running
//! statistics ([`BatchStats::update`], momentum 0.1 as PyTorch's default).
//!
//! Outside a [`TrainMode`] (inference, explaining) nothing changes.

use std::cell::RefCell;

use burn::tensor::Tensor;

thread_local! {
    static RECORDED: RefCell<Option<Vec<BatchStats>>> = const { RefCell::new(None) };
}

/// One batch norm's statistics over one training batch (outside the autodiff graph).
#[derive(Debug, Clone)]
pub struct BatchStats {
    /// The layer's scope (`features.norm0`): its running statistics are
    /// `<name>.running_mean` and `<name>.running_var`.
    pub name: String,
    /// Per-channel mean `[C]`.
    pub mean: Tensor<1>,
    /// Per-channel unbiased variance `[C]` (`n / (n - 1)` times the biased one).
    pub var: Tensor<1>,
}

impl BatchStats {
    /// PyTorch's running-statistics update: `(1 - momentum) * running + momentum * batch`,
    /// for the mean and the variance.
    pub fn update(&self, running_mean: Tensor<1>, running_var: Tensor<1>, momentum: f64) -> (Tensor<1>, Tensor<1>) {
        let mix = |old: Tensor<1>, new: Tensor<1>| old.mul_scalar(1.0 - momentum) + new.mul_scalar(momentum);
        (mix(running_mean, self.mean.clone()), mix(running_var, self.var.clone()))
    }
}

/// Batch norms of this thread in train mode while the value lives (see the module docs).
#[derive(Debug)]
pub struct TrainMode {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl TrainMode {
    /// Starts train mode on this thread (a nested start restarts the record).
    pub fn begin() -> Self {
        RECORDED.with(|r| *r.borrow_mut() = Some(Vec::new()));
        TrainMode { _not_send: std::marker::PhantomData }
    }

    /// Ends train mode; the statistics recorded, in the order the layers ran.
    pub fn finish(self) -> Vec<BatchStats> {
        RECORDED.with(|r| r.borrow_mut().take()).unwrap_or_default()
    }
}

impl Drop for TrainMode {
    fn drop(&mut self) {
        RECORDED.with(|r| *r.borrow_mut() = None);
    }
}

/// Whether batch norms on this thread are in train mode.
pub fn active() -> bool {
    RECORDED.with(|r| r.borrow().is_some())
}

/// Records one layer's statistics (a no-op outside train mode).
pub(crate) fn record(stats: BatchStats) {
    RECORDED.with(|r| {
        if let Some(v) = r.borrow_mut().as_mut() {
            v.push(stats);
        }
    });
}
