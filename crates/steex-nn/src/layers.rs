//! Eval-mode layers, named as in PyTorch (loaded from scoped weights in [`crate::load`]).

use burn::module::{Module, Param};
use burn::tensor::Tensor;

/// `torch.nn.BatchNorm2d` in eval mode: running statistics, optional affine parameters
/// (`weight`, `bias` as PyTorch names them), epsilon 1e-5.
#[derive(Module, Debug)]
pub struct BatchNorm2d {
    /// Per-channel scale (`None` for `affine=False`).
    pub weight: Option<Param<Tensor<1>>>,
    /// Per-channel shift (`None` for `affine=False`).
    pub bias: Option<Param<Tensor<1>>>,
    /// Running mean.
    pub running_mean: Param<Tensor<1>>,
    /// Running variance.
    pub running_var: Param<Tensor<1>>,
    /// The layer's scope in its checkpoint (`features.norm0`), naming its statistics in
    /// train mode ([`crate::train_mode`]).
    #[module(skip)]
    pub name: String,
}

impl BatchNorm2d {
    /// Per-channel `(scale, shift)` such that the layer is `x * scale + shift`.
    pub fn scale_shift(&self) -> (Tensor<1>, Tensor<1>) {
        let inv = self.running_var.val().add_scalar(1e-5).sqrt().recip();
        let scale = match &self.weight {
            Some(w) => w.val() * inv,
            None => inv,
        };
        let shift = -(self.running_mean.val() * scale.clone());
        let shift = match &self.bias {
            Some(b) => shift + b.val(),
            None => shift,
        };
        (scale, shift)
    }

    /// `x * scale + shift` per channel.
    ///
    /// # Shapes
    /// - input: `[B, C, H, W]`
    /// - output: `[B, C, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if crate::train_mode::active() {
            return self.forward_train(x, false);
        }
        let c = x.dims()[1];
        let (scale, shift) = self.scale_shift();
        x * scale.reshape([1, c, 1, 1]) + shift.reshape([1, c, 1, 1])
    }

    /// `relu(self.forward(x))`, in one pass each way on the CPU ([`crate::affine_relu`] for
    /// frozen layers, [`crate::bn_train`] in train mode).
    ///
    /// # Shapes
    /// - input: `[B, C, H, W]`
    /// - output: `[B, C, H, W]`
    pub fn forward_relu(&self, x: Tensor<4>) -> Tensor<4> {
        if crate::train_mode::active() {
            return self.forward_train(x, true);
        }
        let (scale, shift) = self.scale_shift();
        crate::affine_relu::affine_relu(x, scale, shift)
    }
}

impl BatchNorm2d {
    /// `self.forward_relu(Tensor::cat(xs, 1))`, a dense layer's `norm1`. In train mode on
    /// the CPU the concatenation is not written, and the statistics of the channels that
    /// `known` carries are not computed again
    /// ([`crate::bn_train::batch_norm_train_cat`]): pass the same vector, empty at first,
    /// to every layer of a dense block (and to the norm after it). `xs` must not be empty.
    ///
    /// # Shapes
    /// - input: `[B, C_i, H, W]` each, `C = sum C_i`
    /// - output: `[B, C, H, W]`
    pub fn forward_relu_cat(&self, xs: &[Tensor<4>], known: &mut Vec<f32>) -> Tensor<4> {
        if !crate::train_mode::active() {
            return self.forward_relu(Tensor::cat(xs.to_vec(), 1));
        }
        let c = xs.iter().map(|x| x.dims()[1]).sum();
        let (gamma, beta) = self.affine(c, &xs[0].device());
        let (y, mean, var) = crate::bn_train::batch_norm_train_cat(xs, known, gamma, beta, true);
        let [b, _, h, w] = y.dims();
        self.record(mean, var, b * h * w);
        y
    }

    /// Train mode (then `relu` if asked): normalised with the batch's mean and biased
    /// variance over `[B, H, W]`, the batch's mean and unbiased variance recorded
    /// ([`crate::train_mode`]).
    fn forward_train(&self, x: Tensor<4>, relu: bool) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let (gamma, beta) = self.affine(c, &x.device());
        let (y, mean, var) = crate::bn_train::batch_norm_train(x, gamma, beta, relu);
        self.record(mean, var, b * h * w);
        y
    }

    /// `gamma` and `beta` (ones and zeros without affine parameters).
    fn affine(&self, c: usize, device: &burn::tensor::Device) -> (Tensor<1>, Tensor<1>) {
        let gamma = self.weight.as_ref().map_or_else(|| Tensor::ones([c], device), |p| p.val());
        let beta = self.bias.as_ref().map_or_else(|| Tensor::zeros([c], device), |p| p.val());
        (gamma, beta)
    }

    /// Records the batch's mean and unbiased variance over `n` values per channel from
    /// the biased one.
    fn record(&self, mean: Tensor<1>, var: Tensor<1>, n: usize) {
        let n = n as f64;
        crate::train_mode::record(crate::train_mode::BatchStats {
            name: self.name.clone(),
            mean,
            var: var.mul_scalar(n / (n - 1.0).max(1.0)),
        });
    }
}

/// Inserts the four tensors of a `BatchNorm2d(c)` with affine parameters (`weight`, `bias`,
/// `running_mean`, `running_var`) under `prefix` into a name-to-shape map.
pub fn batch_norm_shapes(t: &mut std::collections::BTreeMap<String, Vec<usize>>, prefix: &str, c: usize) {
    for n in ["weight", "bias", "running_mean", "running_var"] {
        t.insert(format!("{prefix}.{n}"), vec![c]);
    }
}
