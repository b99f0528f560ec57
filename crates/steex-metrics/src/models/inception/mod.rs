//! The Inception-v3 that `pytorch-fid` uses for FID (`pytorch_fid.inception.InceptionV3`
//! with its default 2048-d output): torchvision's Inception3 with the `FIDInceptionA`,
//! `FIDInceptionC`, `FIDInceptionE_1` and `FIDInceptionE_2` blocks (average pools that do not
//! count padding, a max pool in the last block), batch-norm epsilon 1e-3, in burn.
//!
//! Weights come from `weights-convert inception` (the `pt_inception-2015-12-05` checkpoint);
//! tensor names are the checkpoint's (`Mixed_5b.branch1x1.conv.weight`, ...), and so are
//! the field names of the module tree. [`FidInception::features`] takes images in [0, 1] of
//! any size, resizes them to 299x299 (bilinear, `align_corners=False`, as
//! `F.interpolate` in pytorch-fid) and scales them to [-1, 1], as pytorch-fid does.
//!
//! A `width_divisor` (metadata) divides every channel count but the 3 input channels: 1 for
//! the real network, larger for the small test fixtures built from the same classes.
#![allow(non_snake_case)]

use std::collections::{BTreeMap, HashMap};

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use steex_nn::{Weights, WeightsError, batch_norm_shapes};

mod blocks;

pub use blocks::{BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE};
use blocks::{Convs, max_pool_3x3};

/// Metadata value of `kind` for a converted FID Inception.
pub const KIND: &str = "fid-inception";

/// The side pytorch-fid resizes every image to.
pub const INPUT_SIZE: usize = 299;

/// What can go wrong building or running the network.
#[derive(Debug, thiserror::Error)]
pub enum InceptionError {
    /// The weights do not hold this network.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// A configuration or input that cannot work.
    #[error("{0}")]
    Config(String),
}

/// Sizes of the network: the channel divisor (1, the default, for pytorch-fid's network).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub struct InceptionConfig {
    /// Every channel count (but the 3 input channels) is divided by this.
    #[config(default = 1)]
    pub width_divisor: usize,
}

impl Default for InceptionConfig {
    fn default() -> Self {
        InceptionConfig::new()
    }
}

/// One `BasicConv2d`: name, input and output channels, kernel, stride, padding.
#[derive(Debug, Clone)]
struct Spec {
    name: String,
    cin: usize,
    cout: usize,
    k: [usize; 2],
    stride: usize,
    pad: [usize; 2],
}

/// Every channel count used by the network divides by these; a divisor must divide them all.
const CHANNELS: &[usize] = &[32, 48, 64, 80, 96, 128, 160, 192, 288, 320, 384, 448, 768, 1280, 2048];

impl InceptionConfig {
    /// The network with random weights (see [`Weights::random`]).
    pub fn init(&self, device: &Device) -> Result<FidInception, InceptionError> {
        self.validate()?;
        FidInception::load(&Weights::random(&self.expected_tensors(), &BTreeMap::new(), 0), *self, device)
    }

    fn validate(&self) -> Result<(), InceptionError> {
        let d = self.width_divisor;
        if d == 0 || CHANNELS.iter().any(|c| c % d != 0) {
            return Err(InceptionError::Config(format!(
                "width divisor {d} does not divide every channel count of Inception-v3 (1, 2, 4, 8 or 16)"
            )));
        }
        Ok(())
    }

    /// Feature size (2048 / divisor).
    pub fn feature_dim(&self) -> usize {
        2048 / self.width_divisor
    }

    /// Every convolution, in order.
    fn specs(&self) -> Vec<Spec> {
        let d = self.width_divisor;
        let c = |n: usize| n / d;
        let mut v = Vec::new();
        let mut add = |name: String, cin: usize, cout: usize, k: [usize; 2], stride: usize, pad: [usize; 2]| {
            v.push(Spec { name, cin, cout, k, stride, pad })
        };
        add("Conv2d_1a_3x3".into(), 3, c(32), [3, 3], 2, [0, 0]);
        add("Conv2d_2a_3x3".into(), c(32), c(32), [3, 3], 1, [0, 0]);
        add("Conv2d_2b_3x3".into(), c(32), c(64), [3, 3], 1, [1, 1]);
        add("Conv2d_3b_1x1".into(), c(64), c(80), [1, 1], 1, [0, 0]);
        add("Conv2d_4a_3x3".into(), c(80), c(192), [3, 3], 1, [0, 0]);
        for (m, cin, pf) in [("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)] {
            let n = |b: &str| format!("{m}.{b}");
            add(n("branch1x1"), c(cin), c(64), [1, 1], 1, [0, 0]);
            add(n("branch5x5_1"), c(cin), c(48), [1, 1], 1, [0, 0]);
            add(n("branch5x5_2"), c(48), c(64), [5, 5], 1, [2, 2]);
            add(n("branch3x3dbl_1"), c(cin), c(64), [1, 1], 1, [0, 0]);
            add(n("branch3x3dbl_2"), c(64), c(96), [3, 3], 1, [1, 1]);
            add(n("branch3x3dbl_3"), c(96), c(96), [3, 3], 1, [1, 1]);
            add(n("branch_pool"), c(cin), c(pf), [1, 1], 1, [0, 0]);
        }
        add("Mixed_6a.branch3x3".into(), c(288), c(384), [3, 3], 2, [0, 0]);
        add("Mixed_6a.branch3x3dbl_1".into(), c(288), c(64), [1, 1], 1, [0, 0]);
        add("Mixed_6a.branch3x3dbl_2".into(), c(64), c(96), [3, 3], 1, [1, 1]);
        add("Mixed_6a.branch3x3dbl_3".into(), c(96), c(96), [3, 3], 2, [0, 0]);
        for (m, c7) in [("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)] {
            let n = |b: &str| format!("{m}.{b}");
            let (c7, cin) = (c(c7), c(768));
            add(n("branch1x1"), cin, c(192), [1, 1], 1, [0, 0]);
            add(n("branch7x7_1"), cin, c7, [1, 1], 1, [0, 0]);
            add(n("branch7x7_2"), c7, c7, [1, 7], 1, [0, 3]);
            add(n("branch7x7_3"), c7, c(192), [7, 1], 1, [3, 0]);
            add(n("branch7x7dbl_1"), cin, c7, [1, 1], 1, [0, 0]);
            add(n("branch7x7dbl_2"), c7, c7, [7, 1], 1, [3, 0]);
            add(n("branch7x7dbl_3"), c7, c7, [1, 7], 1, [0, 3]);
            add(n("branch7x7dbl_4"), c7, c7, [7, 1], 1, [3, 0]);
            add(n("branch7x7dbl_5"), c7, c(192), [1, 7], 1, [0, 3]);
            add(n("branch_pool"), cin, c(192), [1, 1], 1, [0, 0]);
        }
        add("Mixed_7a.branch3x3_1".into(), c(768), c(192), [1, 1], 1, [0, 0]);
        add("Mixed_7a.branch3x3_2".into(), c(192), c(320), [3, 3], 2, [0, 0]);
        add("Mixed_7a.branch7x7x3_1".into(), c(768), c(192), [1, 1], 1, [0, 0]);
        add("Mixed_7a.branch7x7x3_2".into(), c(192), c(192), [1, 7], 1, [0, 3]);
        add("Mixed_7a.branch7x7x3_3".into(), c(192), c(192), [7, 1], 1, [3, 0]);
        add("Mixed_7a.branch7x7x3_4".into(), c(192), c(192), [3, 3], 2, [0, 0]);
        for (m, cin) in [("Mixed_7b", 1280), ("Mixed_7c", 2048)] {
            let n = |b: &str| format!("{m}.{b}");
            let cin = c(cin);
            add(n("branch1x1"), cin, c(320), [1, 1], 1, [0, 0]);
            add(n("branch3x3_1"), cin, c(384), [1, 1], 1, [0, 0]);
            add(n("branch3x3_2a"), c(384), c(384), [1, 3], 1, [0, 1]);
            add(n("branch3x3_2b"), c(384), c(384), [3, 1], 1, [1, 0]);
            add(n("branch3x3dbl_1"), cin, c(448), [1, 1], 1, [0, 0]);
            add(n("branch3x3dbl_2"), c(448), c(384), [3, 3], 1, [1, 1]);
            add(n("branch3x3dbl_3a"), c(384), c(384), [1, 3], 1, [0, 1]);
            add(n("branch3x3dbl_3b"), c(384), c(384), [3, 1], 1, [1, 0]);
            add(n("branch_pool"), cin, c(192), [1, 1], 1, [0, 0]);
        }
        v
    }

    /// Every tensor the network uses, PyTorch layout (`fc.*` of the checkpoint is not used).
    pub fn expected_tensors(&self) -> BTreeMap<String, Vec<usize>> {
        let mut t = BTreeMap::new();
        for s in self.specs() {
            t.insert(format!("{}.conv.weight", s.name), vec![s.cout, s.cin, s.k[0], s.k[1]]);
            batch_norm_shapes(&mut t, &format!("{}.bn", s.name), s.cout);
        }
        t
    }

    /// The divisor that the first convolution's shape gives (32 output channels at full width).
    pub fn infer(shape: impl Fn(&str) -> Option<Vec<usize>>) -> Result<Self, String> {
        let n = "Conv2d_1a_3x3.conv.weight";
        let s = shape(n).ok_or_else(|| format!("missing tensor `{n}`"))?;
        let out = s.first().copied().unwrap_or(0);
        if out == 0 || 32 % out != 0 {
            return Err(format!("`{n}` has shape {s:?}; expected [32, 3, 3, 3] (or 32 / 2^k output channels)"));
        }
        let c = InceptionConfig { width_divisor: 32 / out };
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    /// As metadata entries.
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        [("width_divisor".to_string(), self.width_divisor.to_string())].into_iter().collect()
    }

    /// From metadata (`width_divisor`, 1 when absent).
    pub fn from_metadata(w: &Weights) -> Result<Self, WeightsError> {
        let width_divisor = if w.metadata().contains_key("width_divisor") { w.meta("width_divisor")? } else { 1 };
        Ok(InceptionConfig { width_divisor })
    }
}

/// pytorch-fid's FID Inception-v3, up to the final average pool.
#[derive(Module, Debug)]
pub struct FidInception {
    pub Conv2d_1a_3x3: BasicConv2d,
    pub Conv2d_2a_3x3: BasicConv2d,
    pub Conv2d_2b_3x3: BasicConv2d,
    pub Conv2d_3b_1x1: BasicConv2d,
    pub Conv2d_4a_3x3: BasicConv2d,
    pub Mixed_5b: InceptionA,
    pub Mixed_5c: InceptionA,
    pub Mixed_5d: InceptionA,
    pub Mixed_6a: InceptionB,
    pub Mixed_6b: InceptionC,
    pub Mixed_6c: InceptionC,
    pub Mixed_6d: InceptionC,
    pub Mixed_6e: InceptionC,
    pub Mixed_7a: InceptionD,
    pub Mixed_7b: InceptionE,
    pub Mixed_7c: InceptionE,
    #[module(skip)]
    config: InceptionConfig,
}

impl FidInception {
    /// Builds the network from converted weights (configuration from the metadata); every
    /// tensor of the file must be used.
    pub fn from_weights(w: &Weights, device: &Device) -> Result<Self, InceptionError> {
        w.kind(&[KIND], "the FID Inception (convert it with `weights-convert inception`)")?;
        Self::load(w, InceptionConfig::from_metadata(w)?, device)
    }

    /// Builds the network from weights with the checkpoint's names.
    pub fn load(w: &Weights, config: InceptionConfig, device: &Device) -> Result<Self, InceptionError> {
        config.validate()?;
        let mut c = Convs(HashMap::new());
        for s in config.specs() {
            c.0.insert(s.name.clone(), BasicConv2d::load(w, &s, device)?);
        }
        let mut top = |n: &str| c.0.remove(n).expect("stem convolution in the spec list");
        let (a, b, cc, d, e) = (
            top("Conv2d_1a_3x3"),
            top("Conv2d_2a_3x3"),
            top("Conv2d_2b_3x3"),
            top("Conv2d_3b_1x1"),
            top("Conv2d_4a_3x3"),
        );
        let m = FidInception {
            Conv2d_1a_3x3: a,
            Conv2d_2a_3x3: b,
            Conv2d_2b_3x3: cc,
            Conv2d_3b_1x1: d,
            Conv2d_4a_3x3: e,
            Mixed_5b: InceptionA::take(&mut c, "Mixed_5b"),
            Mixed_5c: InceptionA::take(&mut c, "Mixed_5c"),
            Mixed_5d: InceptionA::take(&mut c, "Mixed_5d"),
            Mixed_6a: InceptionB::take(&mut c, "Mixed_6a"),
            Mixed_6b: InceptionC::take(&mut c, "Mixed_6b"),
            Mixed_6c: InceptionC::take(&mut c, "Mixed_6c"),
            Mixed_6d: InceptionC::take(&mut c, "Mixed_6d"),
            Mixed_6e: InceptionC::take(&mut c, "Mixed_6e"),
            Mixed_7a: InceptionD::take(&mut c, "Mixed_7a"),
            Mixed_7b: InceptionE::take(&mut c, "Mixed_7b", false),
            Mixed_7c: InceptionE::take(&mut c, "Mixed_7c", true),
            config,
        };
        w.finish()?;
        Ok(m.no_grad())
    }

    /// The configuration.
    pub fn config(&self) -> InceptionConfig {
        self.config
    }

    /// Pool features of images in [-1, 1] at 299x299.
    ///
    /// # Shapes
    /// - input: `[B, 3, 299, 299]`
    /// - output: `[B, 2048 / width_divisor]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.Conv2d_2b_3x3.forward(self.Conv2d_2a_3x3.forward(self.Conv2d_1a_3x3.forward(x)));
        let x = max_pool_3x3(x, 2, 0);
        let x = max_pool_3x3(self.Conv2d_4a_3x3.forward(self.Conv2d_3b_1x1.forward(x)), 2, 0);
        let x = self.Mixed_5d.forward(self.Mixed_5c.forward(self.Mixed_5b.forward(x)));
        let x = self.Mixed_6a.forward(x);
        let x = self.Mixed_6e.forward(self.Mixed_6d.forward(self.Mixed_6c.forward(self.Mixed_6b.forward(x))));
        let x = self.Mixed_7c.forward(self.Mixed_7b.forward(self.Mixed_7a.forward(x)));
        let [b, c, h, w] = x.dims();
        x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c])
    }

    /// Features of images given as `[3, H, W]` planes in [0, 1] (each its own size), as
    /// pytorch-fid computes them: bilinear resize to 299x299, `2x - 1`, [`Self::forward`].
    /// Returns `[n, feature_dim]` row-major.
    pub fn features(&self, images: &[(Vec<f32>, usize, usize)], device: &Device) -> Result<Vec<f32>, InceptionError> {
        let mut input = Vec::with_capacity(images.len() * 3 * INPUT_SIZE * INPUT_SIZE);
        for (i, (data, h, w)) in images.iter().enumerate() {
            if data.len() != 3 * h * w || *h == 0 || *w == 0 {
                return Err(InceptionError::Config(format!("image {i}: {} values for a 3x{h}x{w} image", data.len())));
            }
            input.extend(resize_bilinear(data, 3, *h, *w, INPUT_SIZE, INPUT_SIZE).into_iter().map(|v| 2.0 * v - 1.0));
        }
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let x = Tensor::<4>::from_data(TensorData::new(input, [images.len(), 3, INPUT_SIZE, INPUT_SIZE]), device);
        Ok(steex_nn::host(self.forward(x)))
    }
}

/// Bilinear resize of `c` planes `h x w` to `oh x ow` with PyTorch's
/// `F.interpolate(mode="bilinear", align_corners=False)` (no antialiasing) rule.
pub fn resize_bilinear(data: &[f32], c: usize, h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    // Source index and weight along one axis, as `area_pixel_compute_source_index`.
    let axis = |inp: usize, out: usize| -> Vec<(usize, usize, f32)> {
        let scale = inp as f32 / out as f32;
        (0..out)
            .map(|d| {
                let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
                let i0 = (src as usize).min(inp - 1);
                let i1 = if i0 < inp - 1 { i0 + 1 } else { i0 };
                (i0, i1, src - i0 as f32)
            })
            .collect()
    };
    let (ys, xs) = (axis(h, oh), axis(w, ow));
    let mut out = vec![0f32; c * oh * ow];
    for ch in 0..c {
        let p = &data[ch * h * w..(ch + 1) * h * w];
        let o = &mut out[ch * oh * ow..(ch + 1) * oh * ow];
        for (oy, &(y0, y1, ly)) in ys.iter().enumerate() {
            for (ox, &(x0, x1, lx)) in xs.iter().enumerate() {
                let top = (1.0 - lx) * p[y0 * w + x0] + lx * p[y0 * w + x1];
                let bottom = (1.0 - lx) * p[y1 * w + x0] + lx * p[y1 * w + x1];
                o[oy * ow + ox] = (1.0 - ly) * top + ly * bottom;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_identity_and_known_values() {
        let d: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert_eq!(resize_bilinear(&d, 1, 3, 4, 3, 4), d);
        // 1x2 -> 1x4: PyTorch gives [0, 0.25, 0.75, 1].
        let r = resize_bilinear(&[0.0, 1.0], 1, 1, 2, 1, 4);
        assert_eq!(r, vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn spec_shapes_and_divisors() {
        let full = InceptionConfig::default().expected_tensors();
        assert_eq!(full["Mixed_7c.branch_pool.conv.weight"], vec![192, 2048, 1, 1]);
        assert_eq!(full["Mixed_6b.branch7x7_2.conv.weight"], vec![128, 128, 1, 7]);
        // 94 BasicConv2d, 5 tensors each.
        assert_eq!(full.len(), 94 * 5);
        let small = InceptionConfig { width_divisor: 16 };
        assert!(small.validate().is_ok() && small.feature_dim() == 128);
        assert!(InceptionConfig { width_divisor: 3 }.validate().is_err());
        let inferred = InceptionConfig::infer(|n| small.expected_tensors().get(n).cloned()).unwrap();
        assert_eq!(inferred, small);
    }
}
