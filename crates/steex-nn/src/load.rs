//! Layers loaded from scoped weights ([`Scope`]), configured as burn configures its own
//! (`#[derive(Config)]`): `ConvSpec::new([cin, cout], 3).with_padding(1).load(&w.pp("conv_0"), device)`
//! instead of a long positional argument list.

use burn::config::Config;
use burn::module::{Param, ParamId};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use crate::layers::BatchNorm2d;
use crate::weights::{Scope, WeightsError};

/// A `torch.nn.Conv2d` with a square kernel, the same stride, padding and dilation on both
/// axes and no groups (every convolution of the steex models).
#[derive(Config, Debug, PartialEq)]
pub struct ConvSpec {
    /// `[in, out]` channels.
    pub channels: [usize; 2],
    /// Kernel size (square).
    pub kernel: usize,
    /// Stride.
    #[config(default = 1)]
    pub stride: usize,
    /// Zero padding on every side.
    #[config(default = 0)]
    pub padding: usize,
    /// Dilation.
    #[config(default = 1)]
    pub dilation: usize,
    /// Whether the layer has a bias (`<scope>.bias`).
    #[config(default = true)]
    pub bias: bool,
}

impl ConvSpec {
    /// The weight's shape `[out, in, k, k]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        let [cin, cout] = self.channels;
        [cout, cin, self.kernel, self.kernel]
    }

    /// Loads `<scope>.weight` (and `<scope>.bias` when `bias`) as burn's `Conv2d`.
    pub fn load(&self, w: &Scope<'_>, device: &Device) -> Result<Conv2d, WeightsError> {
        let weight = w.tensor("weight", self.weight_shape(), device)?;
        let bias = if self.bias { Some(w.tensor("bias", [self.channels[1]], device)?) } else { None };
        Ok(self.from_tensors(weight, bias))
    }

    /// This convolution as burn's `Conv2d` with the given weights (`[out, in, k, k]`) and
    /// bias.
    pub fn from_tensors(&self, weight: Tensor<4>, bias: Option<Tensor<1>>) -> Conv2d {
        let (k, s, p, d) = (self.kernel, self.stride, self.padding, self.dilation);
        Conv2d {
            weight: Param::initialized(ParamId::new(), weight),
            bias: bias.map(|b| Param::initialized(ParamId::new(), b)),
            stride: [s, s],
            kernel_size: [k, k],
            dilation: [d, d],
            groups: 1,
            padding: PaddingConfig2d::Explicit(p, p, p, p),
        }
    }

    /// The tensors of the layer under `prefix`, into a name-to-shape map.
    pub fn shapes(&self, t: &mut std::collections::BTreeMap<String, Vec<usize>>, prefix: &str) {
        t.insert(format!("{prefix}.weight"), self.weight_shape().to_vec());
        if self.bias {
            t.insert(format!("{prefix}.bias"), vec![self.channels[1]]);
        }
    }
}

impl BatchNorm2d {
    /// Loads `<scope>.running_mean`, `<scope>.running_var` (and `<scope>.weight`,
    /// `<scope>.bias` when `affine`) of a `torch.nn.BatchNorm2d(c)`.
    pub fn load(w: &Scope<'_>, c: usize, affine: bool, device: &Device) -> Result<Self, WeightsError> {
        let p = |n: &str| -> Result<Param<Tensor<1>>, WeightsError> {
            Ok(Param::initialized(ParamId::new(), w.tensor(n, [c], device)?))
        };
        Ok(BatchNorm2d {
            weight: if affine { Some(p("weight")?) } else { None },
            bias: if affine { Some(p("bias")?) } else { None },
            running_mean: p("running_mean")?,
            running_var: p("running_var")?,
            name: w.prefix().to_string(),
        })
    }
}

/// A `torch.nn.Linear` (`<scope>.weight` `[out, in]` in the file, `<scope>.bias`) as burn's
/// `Linear` (`[in, out]`).
pub fn load_linear(w: &Scope<'_>, [din, dout]: [usize; 2], device: &Device) -> Result<burn::nn::Linear, WeightsError> {
    let weight: Tensor<2> = w.tensor("weight", [dout, din], device)?;
    let bias = w.tensor("bias", [dout], device)?;
    Ok(burn::nn::Linear {
        weight: Param::initialized(ParamId::new(), weight.transpose()),
        bias: Some(Param::initialized(ParamId::new(), bias)),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::Weights;

    #[test]
    fn a_spec_loads_what_it_describes() {
        let spec = ConvSpec::new([2, 3], 3).with_padding(1).with_bias(false);
        let mut shapes = BTreeMap::new();
        spec.shapes(&mut shapes, "block.conv");
        assert_eq!(shapes["block.conv.weight"], vec![3, 2, 3, 3]);
        let w = Weights::random(&shapes, &BTreeMap::new(), 0);
        let device = Device::flex();
        let conv = spec.load(&w.pp("block").pp("conv"), &device).unwrap();
        w.finish().unwrap();
        // Padding 1 keeps the size.
        let y = conv.forward(Tensor::<4>::ones([1, 2, 5, 6], &device));
        assert_eq!(y.dims(), [1, 3, 5, 6]);
        assert!(conv.bias.is_none());
    }
}
