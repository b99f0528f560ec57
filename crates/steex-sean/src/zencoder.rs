//! The style encoder (`Zencoder` in the checkpoint): one style vector per label, the mean
//! of a feature map over the label's pixels at half the image resolution.
//!
//! The checkpoint's `Zencoder.model` is an `nn.Sequential`; its layers with weights are at
//! indices 1, 4, 7, 10 and 14, held here as the fields `model_1` ... `model_14`.

use burn::module::{Module, Param, ParamId};
use burn::nn::conv::Conv2d;
use burn::tensor::activation::{leaky_relu, tanh};
use burn::tensor::module::conv_transpose2d;
use burn::tensor::ops::{ConvTransposeOptions, PadMode};
use burn::tensor::{Device, Tensor};
use steex_nn::{ConvSpec, Weights, WeightsError};

/// `nn.ConvTranspose2d(128, 256, 3, stride 2, padding 1, output_padding 1)`; the weight is
/// stored `[in, out, k, k]` as PyTorch stores it.
#[derive(Module, Debug)]
pub struct ConvTranspose {
    /// `[in, out, 3, 3]`.
    pub weight: Param<Tensor<4>>,
    /// `[out]`.
    pub bias: Param<Tensor<1>>,
}

/// The style encoder.
#[derive(Module, Debug)]
pub struct Zencoder {
    /// `model.1`: reflection-padded conv 3 -> n (n = `encoder_ngf`, 32 published).
    pub model_1: Conv2d,
    /// `model.4`: conv n -> 2n, stride 2.
    pub model_4: Conv2d,
    /// `model.7`: conv 2n -> 4n, stride 2.
    pub model_7: Conv2d,
    /// `model.10`: transposed conv 4n -> 8n, stride 2.
    pub model_10: ConvTranspose,
    /// `model.14`: reflection-padded conv 8n -> S, then tanh.
    pub model_14: Conv2d,
}

/// Instance norm without affine parameters, eps 1e-5 (biased variance, per image and
/// channel over the spatial dims).
pub fn instance_norm(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let flat = x.reshape([b, c, h * w]);
    let (var, mean) = flat.clone().var_mean_bias(2);
    ((flat - mean) / var.add_scalar(1e-5).sqrt()).reshape([b, c, h, w])
}

fn lrelu(x: Tensor<4>) -> Tensor<4> {
    leaky_relu(x, 0.2)
}

impl Zencoder {
    /// Loads `Zencoder.model.*` for style length `s` and base width `n` (32 published).
    pub fn load(w: &Weights, s: usize, n: usize, device: &Device) -> Result<Self, WeightsError> {
        let m = w.pp("Zencoder").pp("model");
        let down = |[i, o]: [usize; 2]| ConvSpec::new([i, o], 3).with_stride(2).with_padding(1);
        let t = m.pp(10);
        Ok(Zencoder {
            model_1: ConvSpec::new([3, n], 3).load(&m.pp(1), device)?,
            model_4: down([n, 2 * n]).load(&m.pp(4), device)?,
            model_7: down([2 * n, 4 * n]).load(&m.pp(7), device)?,
            model_10: ConvTranspose {
                weight: Param::initialized(ParamId::new(), t.tensor("weight", [4 * n, 8 * n, 3, 3], device)?),
                bias: Param::initialized(ParamId::new(), t.tensor("bias", [8 * n], device)?),
            },
            model_14: ConvSpec::new([8 * n, s], 3).load(&m.pp(14), device)?,
        })
    }

    /// The feature map of images in [-1, 1].
    ///
    /// # Shapes
    /// - input: `[B, 3, H, W]`
    /// - output: `[B, S, H/2, W/2]`
    pub fn features(&self, image: Tensor<4>) -> Tensor<4> {
        let x = image.pad([(1, 1), (1, 1)], PadMode::Reflect);
        let x = lrelu(instance_norm(self.model_1.forward(x)));
        let x = lrelu(instance_norm(self.model_4.forward(x)));
        let x = lrelu(instance_norm(self.model_7.forward(x)));
        let x = conv_transpose2d(
            x,
            self.model_10.weight.val(),
            Some(self.model_10.bias.val()),
            ConvTransposeOptions::new([2, 2], [1, 1], [1, 1], [1, 1], 1),
        );
        let x = lrelu(instance_norm(x));
        let x = x.pad([(1, 1), (1, 1)], PadMode::Reflect);
        tanh(self.model_14.forward(x))
    }

    /// Style codes `[B, L, S]`: per image and label, the mean feature over the label's
    /// pixels (`onehot` `[B, L, h, w]` at the feature map's size); zero for absent labels.
    pub fn pool(features: Tensor<4>, onehot: Tensor<4>) -> Tensor<3> {
        let [b, s, h, w] = features.dims();
        let l = onehot.dims()[1];
        let m = onehot.reshape([b, l, h * w]);
        let counts = m.clone().sum_dim(2).clamp_min(1.0); // [B, L, 1]
        let sums = m.matmul(features.reshape([b, s, h * w]).swap_dims(1, 2)); // [B, L, S]
        sums / counts
    }
}
