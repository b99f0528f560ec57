//! torchvision's ResNet backbone (BasicBlock for 18/34, Bottleneck for 50/101/152): conv1,
//! bn1, max pool, layer1..layer4, in burn, built from named weights. The decision ResNet
//! (`steex-classifier`), DeepLabV3's backbone (`steex-deeplab`, strides replaced by
//! dilation) and the evaluation models (`steex-metrics`) are built on it.

use std::collections::BTreeMap;

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use steex_nn::conv2d::conv2d;
use steex_nn::{BatchNorm2d, ConvSpec, Scope, Weights, WeightsError, batch_norm_shapes};

/// The residual block kind.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3x3 convolutions (ResNet-18/34).
    Basic,
    /// 1x1, 3x3, 1x1 with expansion 4 (ResNet-50/101/152).
    Bottleneck,
}

impl BlockKind {
    /// Output channels of a block per plane: 1 for basic blocks, 4 for bottlenecks.
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
    /// The name the metadata records (`basic`, `bottleneck`).
    pub fn name(self) -> &'static str {
        match self {
            BlockKind::Basic => "basic",
            BlockKind::Bottleneck => "bottleneck",
        }
    }
}

/// ResNet backbone sizes (torchvision's `ResNet` without its head; named constructors:
/// [`ResNetConfig::depth`], [`ResNetConfig::resnet18`] ... [`ResNetConfig::resnet152`]).
#[derive(Config, Debug, PartialEq)]
pub struct ResNetConfig {
    /// Block kind.
    pub block: BlockKind,
    /// Blocks in layer1..layer4.
    pub layers: [usize; 4],
    /// Stem width; layer `i` has `width * 2^i` planes (64 in torchvision).
    #[config(default = 64)]
    pub width: usize,
    /// torchvision's `replace_stride_with_dilation` for layer2..layer4 (none by default).
    #[config(default = "[false; 3]")]
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

    /// The backbone with random weights (PyTorch's default-init scale, see
    /// [`Weights::random`]), torchvision's names.
    pub fn init(&self, device: &Device) -> Result<ResNetBackbone, WeightsError> {
        let w = Weights::random(&self.expected_tensors(""), &BTreeMap::new(), 0);
        ResNetBackbone::load(&w.root(), self, device)
    }

    /// ResNet-18 (basic blocks 2, 2, 2, 2), width 64.
    pub fn resnet18() -> Self {
        Self::depth(18).expect("a torchvision depth")
    }

    /// ResNet-34 (basic blocks 3, 4, 6, 3), width 64.
    pub fn resnet34() -> Self {
        Self::depth(34).expect("a torchvision depth")
    }

    /// ResNet-50 (bottlenecks 3, 4, 6, 3), width 64.
    pub fn resnet50() -> Self {
        Self::depth(50).expect("a torchvision depth")
    }

    /// ResNet-101 (bottlenecks 3, 4, 23, 3), width 64.
    pub fn resnet101() -> Self {
        Self::depth(101).expect("a torchvision depth")
    }

    /// ResNet-152 (bottlenecks 3, 8, 36, 3), width 64.
    pub fn resnet152() -> Self {
        Self::depth(152).expect("a torchvision depth")
    }

    /// Every block of layer1..layer4 in order, with its sizes: the one derivation of
    /// torchvision's `_make_layer` that every layout (torchvision's, the oracle's) uses.
    pub fn block_sizes(&self) -> Vec<BlockSize> {
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
            let downsample = stride != 1 || inplanes != planes * e;
            out.push(BlockSize { stage: i, index: 0, inplanes, planes, stride, dilation: previous, downsample });
            inplanes = planes * e;
            for j in 1..n {
                out.push(BlockSize { stage: i, index: j, inplanes, planes, stride: 1, dilation, downsample: false });
            }
        }
        out
    }

    /// Every backbone tensor under `prefix` (`resnet`, `backbone`; empty: torchvision's
    /// names as they are), PyTorch layout.
    pub fn expected_tensors(&self, prefix: &str) -> BTreeMap<String, Vec<usize>> {
        let mut t = BTreeMap::new();
        let at = |n: &str| if prefix.is_empty() { n.to_string() } else { format!("{prefix}.{n}") };
        let bn = |t: &mut BTreeMap<String, Vec<usize>>, p: String, c: usize| batch_norm_shapes(t, &p, c);
        t.insert(at("conv1.weight"), vec![self.width, 3, 7, 7]);
        bn(&mut t, at("bn1"), self.width);
        let e = self.block.expansion();
        for s in self.block_sizes() {
            let (inp, planes, down) = (s.inplanes, s.planes, s.downsample);
            let p = at(&s.name());
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

/// One block of a ResNet as torchvision's `_make_layer` sizes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSize {
    /// Stage (layer1 = 0 .. layer4 = 3).
    pub stage: usize,
    /// Block within the stage.
    pub index: usize,
    /// Input channels.
    pub inplanes: usize,
    /// Planes (output channels are `planes * expansion`).
    pub planes: usize,
    /// Stride of the block's strided convolution.
    pub stride: usize,
    /// Dilation of its 3x3 convolutions.
    pub dilation: usize,
    /// Whether it has a projection shortcut (`downsample`).
    pub downsample: bool,
}

impl BlockSize {
    /// Its torchvision name: `layer<stage + 1>.<index>`.
    pub fn name(&self) -> String {
        format!("layer{}.{}", self.stage + 1, self.index)
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
            Some((c, b)) => b.forward(conv2d(c, x.clone())),
            None => x.clone(),
        };
        let out = relu(self.bn1.forward(conv2d(&self.conv1, x)));
        let out = self.bn2.forward(conv2d(&self.conv2, out));
        let out = match (&self.conv3, &self.bn3) {
            (Some(c), Some(b)) => b.forward(conv2d(c, relu(out))),
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
    /// Loads the backbone under `w` (`w.pp("resnet")`, `w.pp("backbone")`, or `w.root()`
    /// for torchvision's names).
    pub fn load(w: &Scope<'_>, config: &ResNetConfig, device: &Device) -> Result<Self, WeightsError> {
        let e = config.block.expansion();
        let mut blocks = Vec::new();
        for size in config.block_sizes() {
            let (inp, planes, stride, dil, down) =
                (size.inplanes, size.planes, size.stride, size.dilation, size.downsample);
            let p = w.pp(size.name());
            let bn = |n: &str, c: usize| BatchNorm2d::load(&p.pp(n), c, true, device);
            let cv = |n: &str, cin, cout, k, s, pad, d| {
                ConvSpec::new([cin, cout], k)
                    .with_stride(s)
                    .with_padding(pad)
                    .with_dilation(d)
                    .with_bias(false)
                    .load(&p.pp(n), device)
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
            conv1: ConvSpec::new([3, config.width], 7)
                .with_stride(2)
                .with_padding(3)
                .with_bias(false)
                .load(&w.pp("conv1"), device)?,
            bn1: BatchNorm2d::load(&w.pp("bn1"), config.width, true, device)?,
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            blocks,
        })
    }

    /// Features of images.
    ///
    /// # Shapes
    /// - input: `[B, 3, H, W]`
    /// - output: `[B, C_out, H/32, W/32]` (`H/8` with layer3 and layer4 dilated), `C_out` =
    ///   [`ResNetConfig::out_channels`]
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = steex_nn::pool::max_pool2d(&self.maxpool, relu(self.bn1.forward(conv2d(&self.conv1, x))));
        for b in &self.blocks {
            x = b.forward(x);
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_backbones_have_the_documented_shapes() {
        let device = Device::flex();
        for (block, dilate, out) in [(BlockKind::Basic, [false; 3], 2), (BlockKind::Bottleneck, [false, true, true], 8)]
        {
            let config = ResNetConfig { block, layers: [1, 1, 1, 1], width: 4, dilate };
            let w = Weights::random(&config.expected_tensors("backbone"), &BTreeMap::new(), 3);
            let m = ResNetBackbone::load(&w.pp("backbone"), &config, &device).unwrap();
            w.finish().unwrap();
            let y = m.forward(Tensor::<4>::ones([2, 3, 64, 64], &device));
            assert_eq!(y.dims(), [2, config.out_channels(), out, out]);
            let v = steex_nn::host(y);
            // After the last ReLU: finite and non-negative.
            assert!(v.iter().all(|x| x.is_finite() && *x >= 0.0));
        }
    }

    #[test]
    fn config_defaults_and_init() {
        assert_eq!(ResNetConfig::new(BlockKind::Bottleneck, [3, 4, 6, 3]), ResNetConfig::resnet50());
        let device = Device::flex();
        let m = ResNetConfig::new(BlockKind::Basic, [1, 1, 1, 1]).with_width(2).init(&device).unwrap();
        assert_eq!(m.forward(Tensor::<4>::ones([1, 3, 32, 32], &device)).dims(), [1, 16, 1, 1]);
    }

    #[test]
    fn torchvision_sizes() {
        let c = ResNetConfig::resnet50();
        let b = c.block_sizes();
        assert_eq!(b.len(), 16);
        assert_eq!(
            b[3],
            BlockSize { stage: 1, index: 0, inplanes: 256, planes: 128, stride: 2, dilation: 1, downsample: true }
        );
        assert_eq!(c.out_channels(), 2048);
        assert_eq!(ResNetConfig::resnet18().depth_name(), Some(18));
        let t = ResNetConfig::resnet18().expected_tensors("");
        assert_eq!(t["layer2.0.downsample.0.weight"], vec![128, 64, 1, 1]);
    }
}
