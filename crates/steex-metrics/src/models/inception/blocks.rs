//! The building blocks of pytorch-fid's Inception-v3: `BasicConv2d` and the
//! `FIDInception*` mixed blocks.

use std::collections::HashMap;

use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AvgPool2dConfig, MaxPool2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use steex_nn::{BatchNorm2d, Weights, WeightsError};

use super::Spec;

/// Convolution (no bias), batch norm (epsilon 1e-3), ReLU.
#[derive(Module, Debug)]
pub struct BasicConv2d {
    pub conv: Conv2d,
    pub bn: BatchNorm2d,
}

impl BasicConv2d {
    pub(super) fn load(w: &Weights, s: &Spec, device: &Device) -> Result<Self, WeightsError> {
        let weight = w.tensor(&format!("{}.conv.weight", s.name), [s.cout, s.cin, s.k[0], s.k[1]], device)?;
        Ok(BasicConv2d {
            conv: Conv2d {
                weight: Param::from_tensor(weight),
                bias: None,
                stride: [s.stride, s.stride],
                kernel_size: s.k,
                dilation: [1, 1],
                groups: 1,
                padding: PaddingConfig2d::Explicit(s.pad[0], s.pad[1], s.pad[0], s.pad[1]),
            },
            bn: BatchNorm2d::load(&w.pp(&s.name).pp("bn"), s.cout, true, device)?,
        })
    }

    /// Convolution, batch norm, ReLU.
    ///
    /// # Shapes
    /// - input: `[B, C_in, H, W]`
    /// - output: `[B, C_out, H', W']` (the convolution's output size)
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.conv.forward(x);
        let c = x.dims()[1];
        let bn = &self.bn;
        let inv = bn.running_var.val().add_scalar(1e-3).sqrt().recip();
        let scale = bn.weight.as_ref().map_or(inv.clone(), |g| g.val() * inv);
        let shift = -(bn.running_mean.val() * scale.clone());
        let shift = bn.bias.as_ref().map_or(shift.clone(), |b| shift + b.val());
        relu(x * scale.reshape([1, c, 1, 1]) + shift.reshape([1, c, 1, 1]))
    }
}

pub(super) fn avg_pool_3x3_same(x: Tensor<4>) -> Tensor<4> {
    AvgPool2dConfig::new([3, 3])
        .with_strides([1, 1])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_count_include_pad(false)
        .init()
        .forward(x)
}

pub(super) fn max_pool_3x3(x: Tensor<4>, stride: usize, pad: usize) -> Tensor<4> {
    MaxPool2dConfig::new([3, 3])
        .with_strides([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .init()
        .forward(x)
}

/// Takes a loaded `BasicConv2d` by its full name.
pub(super) struct Convs(pub(super) HashMap<String, BasicConv2d>);

impl Convs {
    fn take(&mut self, prefix: &str, name: &str) -> BasicConv2d {
        self.0.remove(&format!("{prefix}.{name}")).expect("every convolution is in the spec list")
    }
}

/// `FIDInceptionA`.
#[derive(Module, Debug)]
pub struct InceptionA {
    pub branch1x1: BasicConv2d,
    pub branch5x5_1: BasicConv2d,
    pub branch5x5_2: BasicConv2d,
    pub branch3x3dbl_1: BasicConv2d,
    pub branch3x3dbl_2: BasicConv2d,
    pub branch3x3dbl_3: BasicConv2d,
    pub branch_pool: BasicConv2d,
}

impl InceptionA {
    pub(super) fn take(c: &mut Convs, p: &str) -> Self {
        InceptionA {
            branch1x1: c.take(p, "branch1x1"),
            branch5x5_1: c.take(p, "branch5x5_1"),
            branch5x5_2: c.take(p, "branch5x5_2"),
            branch3x3dbl_1: c.take(p, "branch3x3dbl_1"),
            branch3x3dbl_2: c.take(p, "branch3x3dbl_2"),
            branch3x3dbl_3: c.take(p, "branch3x3dbl_3"),
            branch_pool: c.take(p, "branch_pool"),
        }
    }
    /// The block's branches, concatenated.
    ///
    /// # Shapes
    /// - input: `[B, C_in, H, W]`
    /// - output: `[B, C_out, H', W']`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b5 = self.branch5x5_2.forward(self.branch5x5_1.forward(x.clone()));
        let b3 = self.branch3x3dbl_3.forward(self.branch3x3dbl_2.forward(self.branch3x3dbl_1.forward(x.clone())));
        let bp = self.branch_pool.forward(avg_pool_3x3_same(x));
        Tensor::cat(vec![b1, b5, b3, bp], 1)
    }
}

/// torchvision's `InceptionB` (`Mixed_6a`).
#[derive(Module, Debug)]
pub struct InceptionB {
    pub branch3x3: BasicConv2d,
    pub branch3x3dbl_1: BasicConv2d,
    pub branch3x3dbl_2: BasicConv2d,
    pub branch3x3dbl_3: BasicConv2d,
}

impl InceptionB {
    pub(super) fn take(c: &mut Convs, p: &str) -> Self {
        InceptionB {
            branch3x3: c.take(p, "branch3x3"),
            branch3x3dbl_1: c.take(p, "branch3x3dbl_1"),
            branch3x3dbl_2: c.take(p, "branch3x3dbl_2"),
            branch3x3dbl_3: c.take(p, "branch3x3dbl_3"),
        }
    }
    /// The block's branches, concatenated.
    ///
    /// # Shapes
    /// - input: `[B, C_in, H, W]`
    /// - output: `[B, C_out, H', W']`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b3 = self.branch3x3.forward(x.clone());
        let bd = self.branch3x3dbl_3.forward(self.branch3x3dbl_2.forward(self.branch3x3dbl_1.forward(x.clone())));
        let bp = max_pool_3x3(x, 2, 0);
        Tensor::cat(vec![b3, bd, bp], 1)
    }
}

/// `FIDInceptionC`.
#[derive(Module, Debug)]
pub struct InceptionC {
    pub branch1x1: BasicConv2d,
    pub branch7x7_1: BasicConv2d,
    pub branch7x7_2: BasicConv2d,
    pub branch7x7_3: BasicConv2d,
    pub branch7x7dbl_1: BasicConv2d,
    pub branch7x7dbl_2: BasicConv2d,
    pub branch7x7dbl_3: BasicConv2d,
    pub branch7x7dbl_4: BasicConv2d,
    pub branch7x7dbl_5: BasicConv2d,
    pub branch_pool: BasicConv2d,
}

impl InceptionC {
    pub(super) fn take(c: &mut Convs, p: &str) -> Self {
        InceptionC {
            branch1x1: c.take(p, "branch1x1"),
            branch7x7_1: c.take(p, "branch7x7_1"),
            branch7x7_2: c.take(p, "branch7x7_2"),
            branch7x7_3: c.take(p, "branch7x7_3"),
            branch7x7dbl_1: c.take(p, "branch7x7dbl_1"),
            branch7x7dbl_2: c.take(p, "branch7x7dbl_2"),
            branch7x7dbl_3: c.take(p, "branch7x7dbl_3"),
            branch7x7dbl_4: c.take(p, "branch7x7dbl_4"),
            branch7x7dbl_5: c.take(p, "branch7x7dbl_5"),
            branch_pool: c.take(p, "branch_pool"),
        }
    }
    /// The block's branches, concatenated.
    ///
    /// # Shapes
    /// - input: `[B, C_in, H, W]`
    /// - output: `[B, C_out, H', W']`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b7 = self.branch7x7_3.forward(self.branch7x7_2.forward(self.branch7x7_1.forward(x.clone())));
        let mut bd = self.branch7x7dbl_1.forward(x.clone());
        for l in [&self.branch7x7dbl_2, &self.branch7x7dbl_3, &self.branch7x7dbl_4, &self.branch7x7dbl_5] {
            bd = l.forward(bd);
        }
        let bp = self.branch_pool.forward(avg_pool_3x3_same(x));
        Tensor::cat(vec![b1, b7, bd, bp], 1)
    }
}

/// torchvision's `InceptionD` (`Mixed_7a`).
#[derive(Module, Debug)]
pub struct InceptionD {
    pub branch3x3_1: BasicConv2d,
    pub branch3x3_2: BasicConv2d,
    pub branch7x7x3_1: BasicConv2d,
    pub branch7x7x3_2: BasicConv2d,
    pub branch7x7x3_3: BasicConv2d,
    pub branch7x7x3_4: BasicConv2d,
}

impl InceptionD {
    pub(super) fn take(c: &mut Convs, p: &str) -> Self {
        InceptionD {
            branch3x3_1: c.take(p, "branch3x3_1"),
            branch3x3_2: c.take(p, "branch3x3_2"),
            branch7x7x3_1: c.take(p, "branch7x7x3_1"),
            branch7x7x3_2: c.take(p, "branch7x7x3_2"),
            branch7x7x3_3: c.take(p, "branch7x7x3_3"),
            branch7x7x3_4: c.take(p, "branch7x7x3_4"),
        }
    }
    /// The block's branches, concatenated.
    ///
    /// # Shapes
    /// - input: `[B, C_in, H, W]`
    /// - output: `[B, C_out, H', W']`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b3 = self.branch3x3_2.forward(self.branch3x3_1.forward(x.clone()));
        let mut b7 = self.branch7x7x3_1.forward(x.clone());
        for l in [&self.branch7x7x3_2, &self.branch7x7x3_3, &self.branch7x7x3_4] {
            b7 = l.forward(b7);
        }
        let bp = max_pool_3x3(x, 2, 0);
        Tensor::cat(vec![b3, b7, bp], 1)
    }
}

/// `FIDInceptionE_1` (`max_pool: false`, average pool without padding) and
/// `FIDInceptionE_2` (`max_pool: true`).
#[derive(Module, Debug)]
pub struct InceptionE {
    pub branch1x1: BasicConv2d,
    pub branch3x3_1: BasicConv2d,
    pub branch3x3_2a: BasicConv2d,
    pub branch3x3_2b: BasicConv2d,
    pub branch3x3dbl_1: BasicConv2d,
    pub branch3x3dbl_2: BasicConv2d,
    pub branch3x3dbl_3a: BasicConv2d,
    pub branch3x3dbl_3b: BasicConv2d,
    pub branch_pool: BasicConv2d,
    #[module(skip)]
    pub max_pool: bool,
}

impl InceptionE {
    pub(super) fn take(c: &mut Convs, p: &str, max_pool: bool) -> Self {
        InceptionE {
            branch1x1: c.take(p, "branch1x1"),
            branch3x3_1: c.take(p, "branch3x3_1"),
            branch3x3_2a: c.take(p, "branch3x3_2a"),
            branch3x3_2b: c.take(p, "branch3x3_2b"),
            branch3x3dbl_1: c.take(p, "branch3x3dbl_1"),
            branch3x3dbl_2: c.take(p, "branch3x3dbl_2"),
            branch3x3dbl_3a: c.take(p, "branch3x3dbl_3a"),
            branch3x3dbl_3b: c.take(p, "branch3x3dbl_3b"),
            branch_pool: c.take(p, "branch_pool"),
            max_pool,
        }
    }
    /// The block's branches, concatenated.
    ///
    /// # Shapes
    /// - input: `[B, C_in, H, W]`
    /// - output: `[B, C_out, H', W']`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b3 = self.branch3x3_1.forward(x.clone());
        let b3 = Tensor::cat(vec![self.branch3x3_2a.forward(b3.clone()), self.branch3x3_2b.forward(b3)], 1);
        let bd = self.branch3x3dbl_2.forward(self.branch3x3dbl_1.forward(x.clone()));
        let bd = Tensor::cat(vec![self.branch3x3dbl_3a.forward(bd.clone()), self.branch3x3dbl_3b.forward(bd)], 1);
        let pooled = if self.max_pool { max_pool_3x3(x, 1, 1) } else { avg_pool_3x3_same(x) };
        let bp = self.branch_pool.forward(pooled);
        Tensor::cat(vec![b1, b3, bd, bp], 1)
    }
}
