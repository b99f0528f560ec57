//! Eval-mode layers built from [`Weights`], named as in PyTorch.

use burn::module::{Module, Param, ParamId};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use crate::weights::{Weights, WeightsError};

/// A `torch.nn.Conv2d` (`{prefix}.weight`, `{prefix}.bias` if `bias`) as burn's `Conv2d`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    w: &Weights,
    prefix: &str,
    [cin, cout]: [usize; 2],
    k: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    bias: bool,
    device: &Device,
) -> Result<Conv2d, WeightsError> {
    let weight = w.tensor(&format!("{prefix}.weight"), [cout, cin, k, k], device)?;
    let bias = if bias {
        Some(Param::initialized(ParamId::new(), w.tensor(&format!("{prefix}.bias"), [cout], device)?))
    } else {
        None
    };
    Ok(Conv2d {
        weight: Param::initialized(ParamId::new(), weight),
        bias,
        stride: [stride, stride],
        kernel_size: [k, k],
        dilation: [dilation, dilation],
        groups: 1,
        padding: PaddingConfig2d::Explicit(padding, padding, padding, padding),
    })
}

/// A `torch.nn.Linear` (`weight` `[out, in]` in the file) as burn's `Linear` (`[in, out]`).
pub fn linear(
    w: &Weights,
    prefix: &str,
    [din, dout]: [usize; 2],
    device: &Device,
) -> Result<burn::nn::Linear, WeightsError> {
    let weight: Tensor<2> = w.tensor(&format!("{prefix}.weight"), [dout, din], device)?;
    let bias = w.tensor(&format!("{prefix}.bias"), [dout], device)?;
    Ok(burn::nn::Linear {
        weight: Param::initialized(ParamId::new(), weight.transpose()),
        bias: Some(Param::initialized(ParamId::new(), bias)),
    })
}

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
}

impl BatchNorm2d {
    /// Loads `{prefix}.running_mean/var` (and `.weight/.bias` when `affine`).
    pub fn load(w: &Weights, prefix: &str, c: usize, affine: bool, device: &Device) -> Result<Self, WeightsError> {
        let p = |n: &str| -> Result<Param<Tensor<1>>, WeightsError> {
            Ok(Param::initialized(ParamId::new(), w.tensor(&format!("{prefix}.{n}"), [c], device)?))
        };
        Ok(BatchNorm2d {
            weight: if affine { Some(p("weight")?) } else { None },
            bias: if affine { Some(p("bias")?) } else { None },
            running_mean: p("running_mean")?,
            running_var: p("running_var")?,
        })
    }

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

    /// `[B, C, H, W] -> [B, C, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let c = x.dims()[1];
        let (scale, shift) = self.scale_shift();
        x * scale.reshape([1, c, 1, 1]) + shift.reshape([1, c, 1, 1])
    }
}

/// Inserts the four tensors of a `BatchNorm2d(c)` with affine parameters (`weight`, `bias`,
/// `running_mean`, `running_var`) under `prefix` into a name-to-shape map.
pub fn batch_norm_shapes(t: &mut std::collections::BTreeMap<String, Vec<usize>>, prefix: &str, c: usize) {
    for n in ["weight", "bias", "running_mean", "running_var"] {
        t.insert(format!("{prefix}.{n}"), vec![c]);
    }
}
