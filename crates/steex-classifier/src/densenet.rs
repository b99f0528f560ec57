//! torchvision's DenseNet as the published `DecisionDensenetModel` wraps it:
//! `feat_extract.feat_extract.features.*` (conv0, norm0, denseblocks, transitions, norm5),
//! ReLU, global average pool, then `classifier` (Linear). BatchNorm in eval mode.

use std::collections::BTreeMap;

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use steex_nn::{BatchNorm2d, Conv3x3, ConvSpec, Scope, Weights, WeightsError, batch_norm_shapes, load_linear};

use crate::decision::DecisionModel;
use crate::error::ClassifierError;

/// Metadata value of `kind` for a converted DenseNet.
pub const KIND: &str = "densenet";
const PREFIX: &str = "feat_extract.feat_extract.features";

/// DenseNet sizes (torchvision's constructor arguments) and the number of outputs; the
/// defaults are DenseNet121's ([`DenseNetConfig::densenet121`]).
#[derive(Config, Debug, PartialEq)]
pub struct DenseNetConfig {
    /// Channels each dense layer adds (32 in DenseNet121).
    #[config(default = 32)]
    pub growth_rate: usize,
    /// Dense layers per block (6, 12, 24, 16 in DenseNet121).
    #[config(default = "vec![6, 12, 24, 16]")]
    pub block_config: Vec<usize>,
    /// Channels of the stem convolution (64).
    #[config(default = 64)]
    pub num_init_features: usize,
    /// Bottleneck width multiplier (4).
    #[config(default = 4)]
    pub bn_size: usize,
    /// Decision outputs `K`.
    pub classes: usize,
}

impl DenseNetConfig {
    /// The model with random weights (see [`Weights::random`]).
    pub fn init(&self, device: &Device) -> Result<DenseNet, ClassifierError> {
        DenseNet::load(&Weights::random(&self.expected_tensors(), &BTreeMap::new(), 0), self.clone(), device)
    }

    /// DenseNet121 with `classes` outputs, as published.
    pub fn densenet121(classes: usize) -> Self {
        DenseNetConfig {
            growth_rate: 32,
            block_config: vec![6, 12, 24, 16],
            num_init_features: 64,
            bn_size: 4,
            classes,
        }
    }

    /// Channels entering each block, and the final feature width.
    fn widths(&self) -> (Vec<usize>, usize) {
        let mut c = self.num_init_features;
        let mut ins = Vec::new();
        for (i, &n) in self.block_config.iter().enumerate() {
            ins.push(c);
            c += n * self.growth_rate;
            if i + 1 < self.block_config.len() {
                c /= 2;
            }
        }
        (ins, c)
    }

    /// Every tensor of a converted checkpoint, with its shape (PyTorch layout).
    pub fn expected_tensors(&self) -> BTreeMap<String, Vec<usize>> {
        let mut t = BTreeMap::new();
        let bn = |t: &mut BTreeMap<String, Vec<usize>>, p: String, c: usize| batch_norm_shapes(t, &p, c);
        t.insert(format!("{PREFIX}.conv0.weight"), vec![self.num_init_features, 3, 7, 7]);
        bn(&mut t, format!("{PREFIX}.norm0"), self.num_init_features);
        let (ins, out) = self.widths();
        let mid = self.bn_size * self.growth_rate;
        for (b, (&n, &cin)) in self.block_config.iter().zip(&ins).enumerate() {
            for j in 0..n {
                let p = format!("{PREFIX}.denseblock{}.denselayer{}", b + 1, j + 1);
                let c = cin + j * self.growth_rate;
                bn(&mut t, format!("{p}.norm1"), c);
                t.insert(format!("{p}.conv1.weight"), vec![mid, c, 1, 1]);
                bn(&mut t, format!("{p}.norm2"), mid);
                t.insert(format!("{p}.conv2.weight"), vec![self.growth_rate, mid, 3, 3]);
            }
            if b + 1 < self.block_config.len() {
                let c = cin + n * self.growth_rate;
                let p = format!("{PREFIX}.transition{}", b + 1);
                bn(&mut t, format!("{p}.norm"), c);
                t.insert(format!("{p}.conv.weight"), vec![c / 2, c, 1, 1]);
            }
        }
        bn(&mut t, format!("{PREFIX}.norm5"), out);
        t.insert("classifier.weight".into(), vec![self.classes, out]);
        t.insert("classifier.bias".into(), vec![self.classes]);
        t
    }

    /// The configuration that the tensor shapes of a checkpoint determine.
    pub fn infer(shape: impl Fn(&str) -> Option<Vec<usize>>) -> Result<Self, String> {
        let get = |n: &str, d: usize| -> Result<usize, String> {
            let s = shape(n).ok_or_else(|| format!("missing tensor `{n}`"))?;
            s.get(d).copied().ok_or_else(|| format!("tensor `{n}` has shape {s:?}"))
        };
        let num_init_features = get(&format!("{PREFIX}.conv0.weight"), 0)?;
        let growth_rate = get(&format!("{PREFIX}.denseblock1.denselayer1.conv2.weight"), 0)?;
        let bn_size = get(&format!("{PREFIX}.denseblock1.denselayer1.conv1.weight"), 0)? / growth_rate.max(1);
        let mut block_config = Vec::new();
        for b in 1.. {
            let n = (1..)
                .take_while(|j| shape(&format!("{PREFIX}.denseblock{b}.denselayer{j}.conv1.weight")).is_some())
                .count();
            if n == 0 {
                break;
            }
            block_config.push(n);
        }
        let classes = get("classifier.weight", 0)?;
        Ok(DenseNetConfig { growth_rate, block_config, num_init_features, bn_size, classes })
    }

    /// The configuration as safetensors metadata entries.
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        let blocks: Vec<String> = self.block_config.iter().map(|b| b.to_string()).collect();
        [
            ("classes", self.classes.to_string()),
            ("growth_rate", self.growth_rate.to_string()),
            ("block_config", blocks.join(",")),
            ("num_init_features", self.num_init_features.to_string()),
            ("bn_size", self.bn_size.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Reads the configuration from a converted file's metadata.
    pub fn from_metadata(w: &Weights) -> Result<Self, WeightsError> {
        let blocks: String = w.meta("block_config")?;
        let block_config =
            blocks.split(',').map(|s| s.trim().parse::<usize>()).collect::<Result<Vec<_>, _>>().map_err(|_| {
                WeightsError::Metadata { key: "block_config".into(), reason: format!("cannot parse {blocks:?}") }
            })?;
        Ok(DenseNetConfig {
            growth_rate: w.meta("growth_rate")?,
            block_config,
            num_init_features: w.meta("num_init_features")?,
            bn_size: w.meta("bn_size")?,
            classes: w.meta("classes")?,
        })
    }
}

/// One dense layer: BN-ReLU-conv1x1-BN-ReLU-conv3x3 (the 3x3 on steex-nn's [`Conv3x3`]).
#[derive(Module, Debug)]
pub struct DenseLayer {
    pub norm1: BatchNorm2d,
    pub conv1: Conv2d,
    pub norm2: BatchNorm2d,
    pub conv2: Conv3x3,
}

impl DenseLayer {
    /// The new feature of the concatenation of `features` (`known`: see
    /// [`BatchNorm2d::forward_relu_cat`]).
    fn forward(&self, features: &[Tensor<4>], known: &mut Vec<f32>) -> Tensor<4> {
        let y = pointwise(&self.conv1, self.norm1.forward_relu_cat(features, known));
        self.conv2.forward(self.norm2.forward_relu(y))
    }
}

/// A 1x1 convolution through steex-nn's [`steex_nn::conv2d::conv2d`], which reads each
/// image as its own matrix (no im2col copy) and sums the weight gradient over the images
/// without a per-image `[K, C]` product tensor (burn's batched `matmul`, broadcasting the
/// weights, measured 16.2 against 17.4 images/s training DenseNet121, batch 32 at 128).
fn pointwise(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    steex_nn::conv2d::conv2d(conv, x)
}

/// A transition: BN-ReLU-conv1x1 (halves the channels), average pool 2x2.
#[derive(Module, Debug)]
pub struct Transition {
    pub norm: BatchNorm2d,
    pub conv: Conv2d,
    pub pool: AvgPool2d,
}

/// A dense block and the transition after it (none after the last block).
#[derive(Module, Debug)]
pub struct DenseBlock {
    pub layers: Vec<DenseLayer>,
    pub transition: Option<Transition>,
}

/// The decision model.
#[derive(Module, Debug)]
pub struct DenseNet {
    pub conv0: Conv2d,
    pub norm0: BatchNorm2d,
    pub pool0: MaxPool2d,
    pub blocks: Vec<DenseBlock>,
    pub norm5: BatchNorm2d,
    pub classifier: Linear,
    #[module(skip)]
    config: DenseNetConfig,
}

impl DenseNet {
    /// Builds the model of `config` from converted weights; every tensor must be used.
    /// The model holds no trainable parameters.
    pub fn load(w: &Weights, config: DenseNetConfig, device: &Device) -> Result<Self, ClassifierError> {
        if config.block_config.is_empty() || config.growth_rate == 0 || config.classes == 0 {
            return Err(ClassifierError::Config(format!("not a DenseNet: {config:?}")));
        }
        let (ins, out) = config.widths();
        let mid = config.bn_size * config.growth_rate;
        let f = w.pp(PREFIX);
        let bn = |s: &Scope<'_>, c: usize| BatchNorm2d::load(s, c, true, device);
        let conv = |[i, o]: [usize; 2], k: usize, s: &Scope<'_>| {
            ConvSpec::new([i, o], k).with_padding(k / 2).with_bias(false).load(s, device)
        };
        let mut blocks = Vec::new();
        for (b, (&n, &cin)) in config.block_config.iter().zip(&ins).enumerate() {
            let mut layers = Vec::new();
            for j in 0..n {
                let p = f.pp(format!("denseblock{}", b + 1)).pp(format!("denselayer{}", j + 1));
                let c = cin + j * config.growth_rate;
                layers.push(DenseLayer {
                    norm1: bn(&p.pp("norm1"), c)?,
                    conv1: conv([c, mid], 1, &p.pp("conv1"))?,
                    norm2: bn(&p.pp("norm2"), mid)?,
                    conv2: Conv3x3::from_conv(&conv([mid, config.growth_rate], 3, &p.pp("conv2"))?),
                });
            }
            let transition = if b + 1 < config.block_config.len() {
                let c = cin + n * config.growth_rate;
                let p = f.pp(format!("transition{}", b + 1));
                Some(Transition {
                    norm: bn(&p.pp("norm"), c)?,
                    conv: conv([c, c / 2], 1, &p.pp("conv"))?,
                    pool: AvgPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
                })
            } else {
                None
            };
            blocks.push(DenseBlock { layers, transition });
        }
        let m = DenseNet {
            conv0: ConvSpec::new([3, config.num_init_features], 7)
                .with_stride(2)
                .with_padding(3)
                .with_bias(false)
                .load(&f.pp("conv0"), device)?,
            norm0: bn(&f.pp("norm0"), config.num_init_features)?,
            pool0: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            blocks,
            norm5: bn(&f.pp("norm5"), out)?,
            classifier: load_linear(&w.pp("classifier"), [out, config.classes], device)?,
            config,
        };
        w.finish()?;
        Ok(if w.is_trainable() { m } else { m.no_grad() })
    }

    /// The configuration.
    pub fn config(&self) -> &DenseNetConfig {
        &self.config
    }

    /// Pooled features (before the classifier).
    ///
    /// # Shapes
    /// - input: `[B, 3, H, W]`
    /// - output: `[B, F]`, `F` the channels after `norm5`
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let x = steex_nn::conv2d::conv2d(&self.conv0, x);
        let x = steex_nn::pool::max_pool2d(&self.pool0, self.norm0.forward_relu(x));
        let mut x = x;
        for block in &self.blocks {
            let mut feats = vec![x];
            let mut known = Vec::new();
            for layer in &block.layers {
                let y = layer.forward(&feats, &mut known);
                feats.push(y);
            }
            // The block's concatenation is normalised by the transition's norm, or by norm5
            // after the last block (the one without a transition), like a layer's norm1:
            // not written, the statistics of all but the last feature carried.
            let norm = block.transition.as_ref().map_or(&self.norm5, |t| &t.norm);
            x = norm.forward_relu_cat(&feats, &mut known);
            if let Some(t) = &block.transition {
                x = steex_nn::pool::avg_pool2x2(&t.pool, pointwise(&t.conv, x));
            }
        }
        let [b, c, h, w] = x.dims();
        x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c])
    }
}

impl DecisionModel for DenseNet {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        self.classifier.forward(self.features(images))
    }

    fn num_outputs(&self) -> usize {
        self.config.classes
    }

    fn check_input_size(&self, height: usize, width: usize) -> Result<(), ClassifierError> {
        // conv0 (stride 2), pool0 (stride 2), one 2x2 pool per transition.
        let shrink = |s: usize| {
            let mut s = (s + 2 * 3 - 7) / 2 + 1;
            s = (s + 2 - 3) / 2 + 1;
            for _ in 1..self.config.block_config.len() {
                s /= 2;
            }
            s
        };
        if height < 7 || width < 7 || shrink(height) == 0 || shrink(width) == 0 {
            return Err(ClassifierError::Input(format!(
                "a {width}x{height} image is too small for this DenseNet (at least {0}x{0} pixels)",
                4 << (self.config.block_config.len() - 1)
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    /// A random tiny DenseNet: logits `[B, K]`, finite, and each image's logits do not
    /// depend on the rest of its batch (batch norm in eval mode).
    #[test]
    fn random_densenet_shapes_and_batch_independence() {
        let device = Device::flex();
        let config =
            DenseNetConfig { growth_rate: 2, block_config: vec![1, 2], num_init_features: 4, bn_size: 2, classes: 3 };
        let w = Weights::random(&config.expected_tensors(), &BTreeMap::new(), 2);
        let m = DenseNet::load(&w, config, &device).unwrap();
        let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Uniform(-1.0, 1.0), &device);
        let both = steex_nn::host(m.logits(x.clone()));
        assert_eq!(both.len(), 6);
        assert!(both.iter().all(|v| v.is_finite()));
        let first = steex_nn::host(m.logits(x.narrow(0, 0, 1)));
        for (a, b) in first.iter().zip(&both[..3]) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert!(matches!(m.check_input_size(4, 4), Err(ClassifierError::Input(_))));
    }

    #[test]
    fn config_defaults_are_densenet121() {
        assert_eq!(DenseNetConfig::new(3), DenseNetConfig::densenet121(3));
        let small = DenseNetConfig::new(2).with_growth_rate(2).with_block_config(vec![1]).with_num_init_features(4);
        assert_eq!(small.init(&Device::flex()).unwrap().num_outputs(), 2);
    }
}
