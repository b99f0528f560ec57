//! DeepLabV3 as torchvision builds it (`deeplabv3_resnet50` / `deeplabv3_resnet101`, no
//! auxiliary head), in burn: a ResNet backbone with layer3 and layer4 dilated (output
//! stride 8; `steex-resnet`'s backbone), the ASPP head (rates 12/24/36 and image
//! pooling), a 3x3 conv, the class projection, and bilinear upsampling to the input size
//! (`align_corners=False`). Checkpoint names: `backbone.*`, `classifier.*`.

use std::collections::BTreeMap;

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::relu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};
use steex_nn::conv2d::conv2d;
use steex_nn::{BatchNorm2d, ConvSpec, Weights, WeightsError, batch_norm_shapes};
use steex_resnet::{BlockKind, ResNetBackbone, ResNetConfig};

/// Metadata value of `kind` for a converted DeepLabV3.
pub const KIND: &str = "deeplab";
/// Channels of the ASPP and head in torchvision's `DeepLabHead` (its `ASPP` takes them as
/// `out_channels`).
pub const HEAD: usize = 256;
/// ASPP atrous rates, fixed by torchvision's `DeepLabHead`.
pub const RATES: [usize; 3] = [12, 24, 36];

/// What can go wrong building a segmenter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeepLabError {
    /// The weights do not fit.
    #[error("segmenter weights: {0}")]
    Weights(#[from] WeightsError),
    /// The configuration is not a model.
    #[error("segmenter configuration: {0}")]
    Config(String),
}

/// Backbone sizes and class count (named constructors: [`DeepLabConfig::resnet`],
/// [`DeepLabConfig::deeplabv3_resnet50`], [`DeepLabConfig::deeplabv3_resnet101`]).
#[derive(Config, Debug, PartialEq)]
pub struct DeepLabConfig {
    /// The ResNet backbone (Bottleneck; layer3 and layer4 dilated).
    pub backbone: ResNetConfig,
    /// Output classes.
    pub classes: usize,
    /// Channels of the ASPP branches and the head ([`HEAD`] = 256 in torchvision's
    /// `DeepLabHead`; the synthetic world's tiny segmenter uses fewer).
    #[config(default = 256)]
    pub head: usize,
}

impl DeepLabConfig {
    /// `deeplabv3_resnet50` / `deeplabv3_resnet101` with `classes` outputs.
    pub fn resnet(depth: usize, classes: usize) -> Option<Self> {
        let mut backbone = ResNetConfig::depth(depth)?;
        backbone.dilate = [false, true, true];
        Some(DeepLabConfig { backbone, classes, head: HEAD })
    }

    /// torchvision's `deeplabv3_resnet50` with `classes` outputs.
    pub fn deeplabv3_resnet50(classes: usize) -> Self {
        Self::resnet(50, classes).expect("a torchvision depth")
    }

    /// torchvision's `deeplabv3_resnet101` with `classes` outputs.
    pub fn deeplabv3_resnet101(classes: usize) -> Self {
        Self::resnet(101, classes).expect("a torchvision depth")
    }

    /// The segmenter with random weights (see [`Weights::random`]).
    pub fn init(&self, device: &Device) -> Result<DeepLabV3, DeepLabError> {
        DeepLabV3::load(&Weights::random(&self.expected_tensors(), &BTreeMap::new(), 0), self.clone(), device)
    }

    /// Every tensor of a converted checkpoint (PyTorch layout).
    pub fn expected_tensors(&self) -> BTreeMap<String, Vec<usize>> {
        let mut t = self.backbone.expected_tensors("backbone");
        let (cin, h) = (self.backbone.out_channels(), self.head);
        let bn = |t: &mut BTreeMap<String, Vec<usize>>, p: &str| batch_norm_shapes(t, p, h);
        t.insert("classifier.0.convs.0.0.weight".into(), vec![h, cin, 1, 1]);
        bn(&mut t, "classifier.0.convs.0.1");
        for i in 1..=3 {
            t.insert(format!("classifier.0.convs.{i}.0.weight"), vec![h, cin, 3, 3]);
            bn(&mut t, &format!("classifier.0.convs.{i}.1"));
        }
        t.insert("classifier.0.convs.4.1.weight".into(), vec![h, cin, 1, 1]);
        bn(&mut t, "classifier.0.convs.4.2");
        t.insert("classifier.0.project.0.weight".into(), vec![h, 5 * h, 1, 1]);
        bn(&mut t, "classifier.0.project.1");
        t.insert("classifier.1.weight".into(), vec![h, h, 3, 3]);
        bn(&mut t, "classifier.2");
        t.insert("classifier.4.weight".into(), vec![self.classes, h, 1, 1]);
        t.insert("classifier.4.bias".into(), vec![self.classes]);
        t
    }

    /// Sizes from a checkpoint's tensor shapes.
    pub fn infer(shape: impl Fn(&str) -> Option<Vec<usize>>) -> Result<Self, String> {
        let mut backbone = ResNetConfig::infer("backbone", &shape)?;
        backbone.dilate = [false, true, true];
        if backbone.block != BlockKind::Bottleneck {
            return Err("DeepLabV3's backbone is a Bottleneck ResNet (50/101)".into());
        }
        let first = |n: &str| shape(n).and_then(|s| s.first().copied()).ok_or(format!("missing tensor `{n}`"));
        Ok(DeepLabConfig { backbone, classes: first("classifier.4.weight")?, head: first("classifier.1.weight")? })
    }

    /// Metadata entries.
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        let mut m = self.backbone.to_metadata();
        m.insert("classes".into(), self.classes.to_string());
        m.insert("head".into(), self.head.to_string());
        m
    }

    /// Reads the sizes from a converted file's metadata.
    pub fn from_metadata(w: &Weights) -> Result<Self, WeightsError> {
        let mut backbone = ResNetConfig::from_metadata(w)?;
        backbone.dilate = [false, true, true];
        // Files written before the head width was recorded hold torchvision's.
        let head = if w.metadata().contains_key("head") { w.meta("head")? } else { HEAD };
        Ok(DeepLabConfig { backbone, classes: w.meta("classes")?, head })
    }
}

/// A conv + BN (+ ReLU) branch.
#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: BatchNorm2d,
}

impl ConvBn {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.bn.forward(conv2d(&self.conv, x)))
    }
}

/// The segmenter.
#[derive(Module, Debug)]
pub struct DeepLabV3 {
    pub backbone: ResNetBackbone,
    /// `classifier.0.convs.0..3`: 1x1 and three atrous 3x3 branches.
    pub aspp: Vec<ConvBn>,
    /// `classifier.0.convs.4`: image pooling branch.
    pub pooling: ConvBn,
    /// `classifier.0.project`.
    pub project: ConvBn,
    /// `classifier.1` + `classifier.2`.
    pub head: ConvBn,
    /// `classifier.4`.
    pub cls: Conv2d,
    #[module(skip)]
    config: DeepLabConfig,
}

impl DeepLabV3 {
    /// Builds the model from a `weights-convert deeplab` file (`kind` deeplab), its sizes
    /// read from the metadata; every tensor must be used.
    pub fn from_weights(w: &Weights, device: &Device) -> Result<Self, DeepLabError> {
        w.kind(&[KIND], &format!("a segmenter (kind {KIND})"))?;
        Self::load(w, DeepLabConfig::from_metadata(w)?, device)
    }

    /// Builds the model from converted weights; every tensor must be used.
    pub fn load(w: &Weights, config: DeepLabConfig, device: &Device) -> Result<Self, DeepLabError> {
        let (cin, h) = (config.backbone.out_channels(), config.head);
        let c = w.pp("classifier");
        let convs = c.pp(0).pp("convs");
        let bn = |s: &steex_nn::Scope<'_>| BatchNorm2d::load(s, h, true, device);
        let conv = |k: usize, [i, o]: [usize; 2], s: &steex_nn::Scope<'_>| {
            ConvSpec::new([i, o], k).with_padding(k / 2).with_bias(false).load(s, device)
        };
        let mut aspp = vec![ConvBn { conv: conv(1, [cin, h], &convs.pp("0.0"))?, bn: bn(&convs.pp("0.1"))? }];
        for (i, r) in RATES.iter().enumerate() {
            let b = convs.pp(i + 1);
            aspp.push(ConvBn {
                conv: ConvSpec::new([cin, h], 3)
                    .with_padding(*r)
                    .with_dilation(*r)
                    .with_bias(false)
                    .load(&b.pp(0), device)?,
                bn: bn(&b.pp(1))?,
            });
        }
        let m = DeepLabV3 {
            backbone: ResNetBackbone::load(&w.pp("backbone"), &config.backbone, device)?,
            aspp,
            pooling: ConvBn { conv: conv(1, [cin, h], &convs.pp("4.1"))?, bn: bn(&convs.pp("4.2"))? },
            project: ConvBn { conv: conv(1, [5 * h, h], &c.pp("0.project.0"))?, bn: bn(&c.pp("0.project.1"))? },
            head: ConvBn { conv: conv(3, [h, h], &c.pp(1))?, bn: bn(&c.pp(2))? },
            cls: ConvSpec::new([h, config.classes], 1).load(&c.pp(4), device)?,
            config,
        };
        w.finish()?;
        Ok(if w.is_trainable() { m } else { m.no_grad() })
    }

    /// The sizes.
    pub fn config(&self) -> &DeepLabConfig {
        &self.config
    }

    /// Per-pixel class logits of images in [-1, 1].
    ///
    /// # Shapes
    /// - input: `[B, 3, H, W]`
    /// - output: `[B, classes, H, W]`
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = images.dims();
        let f = self.backbone.forward(images);
        let [b, c, fh, fw] = f.dims();
        let mut branches: Vec<Tensor<4>> = self.aspp.iter().map(|m| m.forward(f.clone())).collect();
        let pooled = f.reshape([b, c, fh * fw]).mean_dim(2).reshape([b, c, 1, 1]);
        // Bilinear resize of a 1x1 map is a broadcast.
        branches.push(self.pooling.forward(pooled).expand([b, self.config.head, fh, fw]));
        // torchvision's ASPP ends in Dropout(0.5): active only while training with dropout.
        let x = steex_nn::dropout(self.project.forward(Tensor::cat(branches, 1)));
        let x = conv2d(&self.cls, self.head.forward(x));
        interpolate(
            x,
            InterpolateOptions::new(InterpolateMode::Bilinear).with_output_size([h, w]).with_align_corners(false),
        )
    }
}

/// The label convention of a segmenter's classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelConvention {
    /// Classes are the generator's labels (the face segmenters, 19 classes).
    Identity,
    /// BDD: class 0 is "unknown", class `k` is train id `k - 1` (20 classes).
    ShiftedByOne,
}

impl LabelConvention {
    /// From a preset name, else from the class count (20: BDD's shifted labels).
    pub fn detect(preset: Option<&str>, classes: usize) -> Self {
        match preset {
            Some("bdd") => LabelConvention::ShiftedByOne,
            Some(_) => LabelConvention::Identity,
            None if classes == 20 => LabelConvention::ShiftedByOne,
            None => LabelConvention::Identity,
        }
    }

    /// The generator label of class `k` (255 = unknown, which the generator maps to its
    /// last label), as the published `infer_masks.py` writes it.
    pub fn to_generator(self, k: usize) -> u8 {
        match self {
            LabelConvention::Identity => k as u8,
            LabelConvention::ShiftedByOne if k == 0 => 255,
            LabelConvention::ShiftedByOne => (k - 1) as u8,
        }
    }
}

/// Per-pixel argmax over classes of logits `[1, C, H, W]` (row-major `[H, W]`), on the host.
pub fn argmax_classes(logits: &[f32], classes: usize, height: usize, width: usize) -> Vec<usize> {
    let n = height * width;
    (0..n)
        .map(|p| {
            let mut best = 0;
            for c in 1..classes {
                if logits[c * n + p] > logits[best * n + p] {
                    best = c;
                }
            }
            best
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    /// A random tiny DeepLabV3: logits at the input's size (any size), finite.
    #[test]
    fn random_deeplab_keeps_the_input_size() {
        let device = Device::flex();
        let backbone =
            ResNetConfig { block: BlockKind::Bottleneck, layers: [1, 1, 1, 1], width: 2, dilate: [false, true, true] };
        let config = DeepLabConfig { backbone, classes: 3, head: 4 };
        let w = Weights::random(&config.expected_tensors(), &BTreeMap::new(), 5);
        let m = DeepLabV3::load(&w, config, &device).unwrap();
        for (h, wd) in [(32, 32), (40, 56)] {
            let y = m.forward(Tensor::<4>::random([1, 3, h, wd], Distribution::Uniform(-1.0, 1.0), &device));
            assert_eq!(y.dims(), [1, 3, h, wd]);
            assert!(steex_nn::host(y).iter().all(|v| v.is_finite()));
        }
    }
}
