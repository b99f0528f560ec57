//! torchvision's ResNet (BasicBlock for 18/34, Bottleneck for 50/101/152), as the published
//! `DecisionResnetModel` wraps it (`resnet.*`, `fc` replaced by Linear(in, K)). The backbone
//! also serves DeepLabV3 (`backbone.*`, strides replaced by dilation).

use std::collections::BTreeMap;

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use steex_nn::{BatchNorm2d, Weights, WeightsError, batch_norm_shapes, conv2d, linear};

use crate::decision::DecisionModel;
use crate::error::ClassifierError;

/// Metadata value of `kind` for a converted ResNet decision model.
pub const KIND: &str = "resnet";

/// The residual block kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3x3 convolutions (ResNet-18/34).
    Basic,
    /// 1x1, 3x3, 1x1 with expansion 4 (ResNet-50/101/152).
    Bottleneck,
}

impl BlockKind {
    fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
    fn name(self) -> &'static str {
        match self {
            BlockKind::Basic => "basic",
            BlockKind::Bottleneck => "bottleneck",
        }
    }
}

/// ResNet backbone sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct ResNetConfig {
    /// Block kind.
    pub block: BlockKind,
    /// Blocks in layer1..layer4.
    pub layers: [usize; 4],
    /// Stem width; layer `i` has `width * 2^i` planes (64 in torchvision).
    pub width: usize,
    /// torchvision's `replace_stride_with_dilation` for layer2..layer4.
    pub dilate: [bool; 3],
}

impl ResNetConfig {
    /// torchvision's ResNet of `depth` (18, 34, 50, 101, 152).
    pub fn depth(depth: usize) -> Option<Self> {
        let (block, layers) = match depth {
            18 => (BlockKind::Basic, [2, 2, 2, 2]),
            34 => (BlockKind::Basic, [3, 4, 6, 3]),
            50 => (BlockKind::Bottleneck, [3, 4, 6, 3]),
            101 => (BlockKind::Bottleneck, [3, 4, 23, 3]),
            152 => (BlockKind::Bottleneck, [3, 8, 36, 3]),
            _ => return None,
        };
        Some(ResNetConfig { block, layers, width: 64, dilate: [false; 3] })
    }

    /// The torchvision depth these sizes are, if any.
    pub fn depth_name(&self) -> Option<usize> {
        [18, 34, 50, 101, 152].into_iter().find(|&d| {
            Self::depth(d).is_some_and(|c| c.block == self.block && c.layers == self.layers && self.width == 64)
        })
    }

    /// Output channels of the backbone.
    pub fn out_channels(&self) -> usize {
        self.width * 8 * self.block.expansion()
    }

    /// Per block: `(name, inplanes, planes, stride, dilation, has_downsample)`.
    fn blocks(&self) -> Vec<(String, usize, usize, usize, usize, bool)> {
        let e = self.block.expansion();
        let mut inplanes = self.width;
        let mut dilation = 1;
        let mut out = Vec::new();
        for (i, &n) in self.layers.iter().enumerate() {
            let planes = self.width << i;
            let mut stride = if i == 0 { 1 } else { 2 };
            let previous = dilation;
            if i > 0 && self.dilate[i - 1] {
                dilation *= stride;
                stride = 1;
            }
            let down = stride != 1 || inplanes != planes * e;
            out.push((format!("layer{}.0", i + 1), inplanes, planes, stride, previous, down));
            inplanes = planes * e;
            for j in 1..n {
                out.push((format!("layer{}.{j}", i + 1), inplanes, planes, 1, dilation, false));
            }
        }
        out
    }

    /// Every backbone tensor under `prefix` (`resnet`, `backbone`), PyTorch layout.
    pub fn expected_tensors(&self, prefix: &str) -> BTreeMap<String, Vec<usize>> {
        let mut t = BTreeMap::new();
        let bn = |t: &mut BTreeMap<String, Vec<usize>>, p: String, c: usize| batch_norm_shapes(t, &p, c);
        t.insert(format!("{prefix}.conv1.weight"), vec![self.width, 3, 7, 7]);
        bn(&mut t, format!("{prefix}.bn1"), self.width);
        let e = self.block.expansion();
        for (name, inp, planes, _, _, down) in self.blocks() {
            let p = format!("{prefix}.{name}");
            match self.block {
                BlockKind::Basic => {
                    t.insert(format!("{p}.conv1.weight"), vec![planes, inp, 3, 3]);
                    t.insert(format!("{p}.conv2.weight"), vec![planes, planes, 3, 3]);
                }
                BlockKind::Bottleneck => {
                    t.insert(format!("{p}.conv1.weight"), vec![planes, inp, 1, 1]);
                    t.insert(format!("{p}.conv2.weight"), vec![planes, planes, 3, 3]);
                    t.insert(format!("{p}.conv3.weight"), vec![planes * e, planes, 1, 1]);
                    bn(&mut t, format!("{p}.bn3"), planes * e);
                }
            }
            bn(&mut t, format!("{p}.bn1"), planes);
            bn(&mut t, format!("{p}.bn2"), planes);
            if down {
                t.insert(format!("{p}.downsample.0.weight"), vec![planes * e, inp, 1, 1]);
                bn(&mut t, format!("{p}.downsample.1"), planes * e);
            }
        }
        t
    }

    /// The sizes that a checkpoint's tensor shapes determine (dilation is not in them).
    pub fn infer(prefix: &str, shape: impl Fn(&str) -> Option<Vec<usize>>) -> Result<Self, String> {
        let stem = format!("{prefix}.conv1.weight");
        let width = shape(&stem).and_then(|s| s.first().copied()).ok_or_else(|| format!("missing tensor `{stem}`"))?;
        let block = if shape(&format!("{prefix}.layer1.0.conv3.weight")).is_some() {
            BlockKind::Bottleneck
        } else {
            BlockKind::Basic
        };
        let mut layers = [0; 4];
        for (i, l) in layers.iter_mut().enumerate() {
            *l = (0..).take_while(|j| shape(&format!("{prefix}.layer{}.{j}.conv1.weight", i + 1)).is_some()).count();
            if *l == 0 {
                return Err(format!("missing tensor `{prefix}.layer{}.0.conv1.weight`", i + 1));
            }
        }
        Ok(ResNetConfig { block, layers, width, dilate: [false; 3] })
    }

    /// The sizes as metadata entries.
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = [
            ("block", self.block.name().to_string()),
            ("layers", self.layers.map(|l| l.to_string()).join(",")),
            ("width", self.width.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(d) = self.depth_name() {
            m.insert("depth".into(), d.to_string());
        }
        m
    }

    /// Reads the sizes from metadata (no dilation).
    pub fn from_metadata(w: &Weights) -> Result<Self, WeightsError> {
        let bad = |k: &str, v: &str| WeightsError::Metadata { key: k.into(), reason: format!("cannot parse {v:?}") };
        let block: String = w.meta("block")?;
        let block = match block.as_str() {
            "basic" => BlockKind::Basic,
            "bottleneck" => BlockKind::Bottleneck,
            _ => return Err(bad("block", &block)),
        };
        let layers: String = w.meta("layers")?;
        let v: Vec<usize> = layers
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|_| bad("layers", &layers))?;
        let layers: [usize; 4] = v.try_into().map_err(|_| bad("layers", &layers))?;
        Ok(ResNetConfig { block, layers, width: w.meta("width")?, dilate: [false; 3] })
    }
}

/// One residual block (BasicBlock or Bottleneck), field names as torchvision's.
#[derive(Module, Debug)]
pub struct Block {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub conv2: Conv2d,
    pub bn2: BatchNorm2d,
    pub conv3: Option<Conv2d>,
    pub bn3: Option<BatchNorm2d>,
    /// `downsample.0` (conv1x1) and `downsample.1` (BN).
    pub downsample: Option<(Conv2d, BatchNorm2d)>,
}

impl Block {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some((c, b)) => b.forward(c.forward(x.clone())),
            None => x.clone(),
        };
        let out = relu(self.bn1.forward(self.conv1.forward(x)));
        let out = self.bn2.forward(self.conv2.forward(out));
        let out = match (&self.conv3, &self.bn3) {
            (Some(c), Some(b)) => b.forward(c.forward(relu(out))),
            _ => out,
        };
        relu(out + identity)
    }
}

/// conv1, bn1, ReLU, max pool, layer1..layer4.
#[derive(Module, Debug)]
pub struct ResNetBackbone {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub maxpool: MaxPool2d,
    /// All blocks of layer1..layer4 in order.
    pub blocks: Vec<Block>,
}

impl ResNetBackbone {
    /// Loads `{prefix}.*`.
    pub fn load(w: &Weights, prefix: &str, config: &ResNetConfig, device: &Device) -> Result<Self, WeightsError> {
        let e = config.block.expansion();
        let mut blocks = Vec::new();
        for (name, inp, planes, stride, dil, down) in config.blocks() {
            let p = format!("{prefix}.{name}");
            let bn = |n: &str, c: usize| BatchNorm2d::load(w, &format!("{p}.{n}"), c, true, device);
            let cv = |n: &str, cin, cout, k, s, pad, d| {
                conv2d(w, &format!("{p}.{n}"), [cin, cout], k, s, pad, d, false, device)
            };
            let downsample = if down {
                Some((cv("downsample.0", inp, planes * e, 1, stride, 0, 1)?, bn("downsample.1", planes * e)?))
            } else {
                None
            };
            blocks.push(match config.block {
                BlockKind::Basic => Block {
                    conv1: cv("conv1", inp, planes, 3, stride, dil, dil)?,
                    bn1: bn("bn1", planes)?,
                    conv2: cv("conv2", planes, planes, 3, 1, dil, dil)?,
                    bn2: bn("bn2", planes)?,
                    conv3: None,
                    bn3: None,
                    downsample,
                },
                BlockKind::Bottleneck => Block {
                    conv1: cv("conv1", inp, planes, 1, 1, 0, 1)?,
                    bn1: bn("bn1", planes)?,
                    conv2: cv("conv2", planes, planes, 3, stride, dil, dil)?,
                    bn2: bn("bn2", planes)?,
                    conv3: Some(cv("conv3", planes, planes * e, 1, 1, 0, 1)?),
                    bn3: Some(bn("bn3", planes * e)?),
                    downsample,
                },
            });
        }
        Ok(ResNetBackbone {
            conv1: conv2d(w, &format!("{prefix}.conv1"), [3, config.width], 7, 2, 3, 1, false, device)?,
            bn1: BatchNorm2d::load(w, &format!("{prefix}.bn1"), config.width, true, device)?,
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            blocks,
        })
    }

    /// `[B, 3, H, W] -> [B, C_out, H/32, W/32]` (H/8 with dilation in layer3 and layer4).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.maxpool.forward(relu(self.bn1.forward(self.conv1.forward(x))));
        for b in &self.blocks {
            x = b.forward(x);
        }
        x
    }
}

/// The decision model: backbone, global average pool, `fc`.
#[derive(Module, Debug)]
pub struct ResNet {
    pub resnet: ResNetBackbone,
    pub fc: Linear,
    #[module(skip)]
    config: ResNetConfig,
    #[module(skip)]
    classes: usize,
}

impl ResNet {
    /// Builds the model from converted weights (`resnet.*`, `resnet.fc.*`); every tensor must
    /// be used. The model holds no trainable parameters.
    pub fn load(w: &Weights, config: ResNetConfig, classes: usize, device: &Device) -> Result<Self, ClassifierError> {
        if config.layers.contains(&0) || config.width == 0 || classes == 0 {
            return Err(ClassifierError::Config(format!("not a ResNet: {config:?} with {classes} outputs")));
        }
        let m = ResNet {
            resnet: ResNetBackbone::load(w, "resnet", &config, device)?,
            fc: linear(w, "resnet.fc", [config.out_channels(), classes], device)?,
            config,
            classes,
        };
        w.finish()?;
        Ok(if w.is_trainable() { m } else { m.no_grad() })
    }

    /// The backbone sizes.
    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    /// Every tensor of a converted decision ResNet.
    pub fn expected_tensors(config: &ResNetConfig, classes: usize) -> BTreeMap<String, Vec<usize>> {
        let mut t = config.expected_tensors("resnet");
        t.insert("resnet.fc.weight".into(), vec![classes, config.out_channels()]);
        t.insert("resnet.fc.bias".into(), vec![classes]);
        t
    }
}

impl DecisionModel for ResNet {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.resnet.forward(images);
        let [b, c, h, w] = x.dims();
        self.fc.forward(x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c]))
    }

    fn num_outputs(&self) -> usize {
        self.classes
    }

    fn check_input_size(&self, height: usize, width: usize) -> Result<(), String> {
        if height < 32 || width < 32 {
            return Err(format!("a {width}x{height} image is too small for this ResNet (at least 32x32 pixels)"));
        }
        Ok(())
    }
}
