//! Batch norms in train mode, as `torch.nn.BatchNorm2d.train()`: while a [`TrainMode`] is
//! active on the calling thread, every [`crate::BatchNorm2d`] normalises with the batch's
//! statistics (biased variance) instead of its running ones, and records the batch's mean
//! and unbiased variance under its scope name. The trainer then folds them into the running
//! statistics ([`BatchStats::update`], momentum 0.1 as PyTorch's default).
//!
//! A [`TrainMode`] begun with [`TrainMode::begin_with_dropout`] also turns on [`dropout`]
//! (`torch.nn.Dropout` in training), drawn from a generator seeded by the trainer, so a
//! resumed run draws the same masks.
//!
//! Outside a [`TrainMode`] (inference, explaining) nothing changes.

use std::cell::RefCell;

use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

thread_local! {
    static RECORDED: RefCell<Option<Vec<BatchStats>>> = const { RefCell::new(None) };
    static DROPOUT: RefCell<Option<(f64, StdRng)>> = const { RefCell::new(None) };
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

    /// Starts train mode with dropout: [`dropout`] zeroes each element with probability
    /// `p` and scales the others by `1 / (1 - p)`, drawing from a generator seeded with
    /// `seed` (`p` 0: no dropout).
    pub fn begin_with_dropout(p: f64, seed: u64) -> Self {
        let mode = Self::begin();
        DROPOUT.with(|d| *d.borrow_mut() = (p > 0.0).then(|| (p, StdRng::seed_from_u64(seed))));
        mode
    }

    /// Ends train mode; the statistics recorded, in the order the layers ran.
    pub fn finish(self) -> Vec<BatchStats> {
        RECORDED.with(|r| r.borrow_mut().take()).unwrap_or_default()
    }
}

impl Drop for TrainMode {
    fn drop(&mut self) {
        RECORDED.with(|r| *r.borrow_mut() = None);
        DROPOUT.with(|d| *d.borrow_mut() = None);
    }
}

/// `torch.nn.Dropout` in training while a [`TrainMode::begin_with_dropout`] is active on
/// this thread (elements zeroed with its probability, the rest scaled by `1 / (1 - p)`);
/// `x` unchanged otherwise.
pub fn dropout<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let n = x.shape().num_elements();
    let mask = DROPOUT.with(|d| {
        d.borrow_mut().as_mut().map(|(p, rng)| {
            let keep = (1.0 / (1.0 - *p)) as f32;
            (0..n).map(|_| if rng.random::<f64>() < *p { 0.0 } else { keep }).collect::<Vec<f32>>()
        })
    });
    match mask {
        Some(m) => {
            let m = Tensor::<D>::from_data(TensorData::new(m, x.dims()), &x.device());
            x * m
        }
        None => x,
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

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;

    fn ones() -> Tensor<2> {
        Tensor::<2>::ones([64, 64], &Device::flex())
    }

    /// Dropout zeroes about `p` of the elements and scales the rest by `1 / (1 - p)`, draws
    /// the same mask from the same seed and another from another seed, and is the identity
    /// outside train mode or with `p` 0.
    #[test]
    fn dropout_follows_its_probability_and_its_seed() {
        let draw = |p: f64, seed: u64| {
            let mode = TrainMode::begin_with_dropout(p, seed);
            let v: Vec<f32> = crate::host(dropout(ones()));
            drop(mode);
            v
        };
        let a = draw(0.5, 7);
        let zeros = a.iter().filter(|&&x| x == 0.0).count() as f64 / a.len() as f64;
        assert!((zeros - 0.5).abs() < 0.03, "share zeroed {zeros}");
        assert!(a.iter().all(|&x| x == 0.0 || x == 2.0));
        assert_eq!(a, draw(0.5, 7));
        assert_ne!(a, draw(0.5, 8));
        let b = draw(0.25, 7);
        assert!(b.iter().all(|&x| x == 0.0 || (x - 4.0 / 3.0).abs() < 1e-6));
        assert!(draw(0.0, 7).iter().all(|&x| x == 1.0));
        assert!(crate::host(dropout(ones())).iter().all(|&x| x == 1.0), "outside train mode");
        let plain = TrainMode::begin();
        assert!(crate::host(dropout(ones())).iter().all(|&x| x == 1.0), "train mode without dropout");
        drop(plain);
    }
}
