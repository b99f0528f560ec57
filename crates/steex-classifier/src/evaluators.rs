//! The ResNet-50s that evaluate explanations (spec section 6), built on [`ResNetBackbone`]:
//!
//! - [`FaceEmbedder`]: a VGGFace2 face-recognition ResNet in torchvision's plain layout
//!   (`conv1`, `bn1`, `layer1.0.conv1`, ..., `fc`, no prefix); its embedding is the 2048-d
//!   global average pool before `fc` (the FVA metric compares embeddings);
//! - [`Oracle`]: the reference's `OracleResnet` (`models/OracleResnetModel.py`): a
//!   `Resnet50_ft_dag` feature extractor (`feat_extract.conv1_7x7_s2`, ...: Caffe-style
//!   bottlenecks with the stride on the 1x1 reduce convolution, max pool 3x3/2 with ceil mode
//!   and no padding, average pool 7x7) and a Linear `classifier` to 40 attribute logits (the
//!   MNAC metric counts decisions that change).

use std::collections::BTreeMap;

use burn::module::Module;
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use steex_nn::{BatchNorm2d, Weights, batch_norm_shapes, conv2d, linear};

use crate::error::ClassifierError;
use crate::resnet::{Block, BlockKind, ResNetBackbone, ResNetConfig};

/// Metadata `kind` of a converted face embedder.
pub const FACE_KIND: &str = "face-resnet";
/// Metadata `kind` of a converted attribute oracle.
pub const ORACLE_KIND: &str = "oracle-resnet";
/// Side of the square images both models take (the reference resizes to 224x224).
pub const INPUT_SIZE: usize = 224;
/// VGGFace2's per-channel mean, in BGR order, subtracted from 0..255 BGR pixels.
pub const FACE_MEAN_BGR: [f32; 3] = [91.4953, 103.8827, 131.0912];

fn dims(config: &ResNetConfig) -> Vec<(usize, usize, usize, usize)> {
    // Per block (stage, index, inplanes, planes), torchvision order.
    let e = config.block_expansion();
    let mut out = Vec::new();
    let mut inp = config.width;
    for (s, &n) in config.layers.iter().enumerate() {
        let planes = config.width << s;
        for b in 0..n {
            out.push((s, b, inp, planes));
            inp = planes * e;
        }
    }
    out
}

impl ResNetConfig {
    /// 1 for basic blocks, 4 for bottlenecks.
    fn block_expansion(&self) -> usize {
        match self.block {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

fn bottleneck_only(config: &ResNetConfig) -> Result<(), ClassifierError> {
    if config.block != BlockKind::Bottleneck || config.layers.contains(&0) || config.width == 0 {
        return Err(ClassifierError::Config(format!("expected a bottleneck ResNet, got {config:?}")));
    }
    Ok(())
}

fn max_pool(ceil: bool, pad: usize) -> burn::nn::pool::MaxPool2d {
    MaxPool2dConfig::new([3, 3])
        .with_strides([2, 2])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_ceil_mode(ceil)
        .init()
}

/// Global average pool `[B, C, H, W] -> [B, C]`.
fn global_mean(x: Tensor<4>) -> Tensor<2> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c])
}

fn check_input(x: &Tensor<4>) -> Result<(), ClassifierError> {
    let [_, c, h, w] = x.dims();
    if c != 3 || h != INPUT_SIZE || w != INPUT_SIZE {
        return Err(ClassifierError::Input(format!(
            "expected images [B, 3, {INPUT_SIZE}, {INPUT_SIZE}], got [_, {c}, {h}, {w}]"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------

/// A VGGFace2 ResNet in torchvision's layout; embeddings are the average-pooled features.
#[derive(Module, Debug)]
pub struct FaceEmbedder {
    /// conv1 .. layer4 (torchvision names, no prefix).
    pub backbone: ResNetBackbone,
    #[module(skip)]
    config: ResNetConfig,
}

impl FaceEmbedder {
    /// Every tensor the embedder uses (`fc.*` of a checkpoint is not used).
    pub fn expected_tensors(config: &ResNetConfig) -> BTreeMap<String, Vec<usize>> {
        config.expected_tensors("x").into_iter().map(|(k, v)| (k["x.".len()..].to_string(), v)).collect()
    }

    /// Builds the embedder from a `weights-convert face` file.
    pub fn from_weights(w: &Weights, device: &Device) -> Result<Self, ClassifierError> {
        let kind: String = w.meta("kind")?;
        if kind != FACE_KIND {
            return Err(ClassifierError::Config(format!(
                "the weights hold a `{kind}` model, not a face embedder (convert it with `weights-convert face`)"
            )));
        }
        Self::load(w, ResNetConfig::from_metadata(w)?, device)
    }

    /// Builds the embedder from weights with torchvision's names.
    pub fn load(w: &Weights, config: ResNetConfig, device: &Device) -> Result<Self, ClassifierError> {
        bottleneck_only(&config)?;
        let e = config.block_expansion();
        let mut blocks = Vec::new();
        for (s, b, inp, planes) in dims(&config) {
            let p = format!("layer{}.{b}", s + 1);
            let stride = if b == 0 && s > 0 { 2 } else { 1 };
            let bn = |n: &str, c: usize| BatchNorm2d::load(w, &format!("{p}.{n}"), c, true, device);
            let cv = |n: &str, cin, cout, k, st, pad| {
                conv2d(w, &format!("{p}.{n}"), [cin, cout], k, st, pad, 1, false, device)
            };
            let downsample = if b == 0 {
                Some((cv("downsample.0", inp, planes * e, 1, stride, 0)?, bn("downsample.1", planes * e)?))
            } else {
                None
            };
            blocks.push(Block {
                conv1: cv("conv1", inp, planes, 1, 1, 0)?,
                bn1: bn("bn1", planes)?,
                conv2: cv("conv2", planes, planes, 3, stride, 1)?,
                bn2: bn("bn2", planes)?,
                conv3: Some(cv("conv3", planes, planes * e, 1, 1, 0)?),
                bn3: Some(bn("bn3", planes * e)?),
                downsample,
            });
        }
        let backbone = ResNetBackbone {
            conv1: conv2d(w, "conv1", [3, config.width], 7, 2, 3, 1, false, device)?,
            bn1: BatchNorm2d::load(w, "bn1", config.width, true, device)?,
            maxpool: max_pool(false, 1),
            blocks,
        };
        w.finish()?;
        Ok(FaceEmbedder { backbone, config }.no_grad())
    }

    /// Embedding size.
    pub fn dim(&self) -> usize {
        self.config.out_channels()
    }

    /// `[B, 3, 224, 224]` preprocessed ([`face_input`]) -> `[B, dim]` embeddings.
    pub fn embed(&self, x: Tensor<4>) -> Result<Tensor<2>, ClassifierError> {
        check_input(&x)?;
        Ok(global_mean(self.backbone.forward(x)))
    }
}

/// VGGFace2 preprocessing of one `[3, H, W]` RGB image in [-1, 1] (as `read_image` gives):
/// back to 0..255, channels in BGR order, minus [`FACE_MEAN_BGR`].
pub fn face_input(rgb: &[f32]) -> Vec<f32> {
    let n = rgb.len() / 3;
    let mut out = Vec::with_capacity(rgb.len());
    for (c, mean) in FACE_MEAN_BGR.iter().enumerate() {
        let src = &rgb[(2 - c) * n..(3 - c) * n];
        out.extend(src.iter().map(|&v| (v + 1.0) * 127.5 - mean));
    }
    out
}

// ---------------------------------------------------------------------------------------

/// The reference's attribute oracle (`OracleResnet`).
#[derive(Module, Debug)]
pub struct Oracle {
    /// `Resnet50_ft_dag` up to its last ReLU.
    pub feat_extract: ResNetBackbone,
    /// Linear(2048, 40).
    pub classifier: Linear,
    #[module(skip)]
    config: ResNetConfig,
    #[module(skip)]
    classes: usize,
}

/// `conv{stage + 2}_{index + 1}` of `Resnet50_ft_dag`.
fn ft_dag_block(s: usize, b: usize) -> String {
    format!("feat_extract.conv{}_{}", s + 2, b + 1)
}

impl Oracle {
    /// Every tensor of a converted oracle with stem width `config.width` (64 in the reference).
    pub fn expected_tensors(config: &ResNetConfig, classes: usize) -> BTreeMap<String, Vec<usize>> {
        let mut t = BTreeMap::new();
        let e = config.block_expansion();
        t.insert("feat_extract.conv1_7x7_s2.weight".into(), vec![config.width, 3, 7, 7]);
        batch_norm_shapes(&mut t, "feat_extract.conv1_7x7_s2_bn", config.width);
        for (s, b, inp, planes) in dims(config) {
            let p = ft_dag_block(s, b);
            t.insert(format!("{p}_1x1_reduce.weight"), vec![planes, inp, 1, 1]);
            batch_norm_shapes(&mut t, &format!("{p}_1x1_reduce_bn"), planes);
            t.insert(format!("{p}_3x3.weight"), vec![planes, planes, 3, 3]);
            batch_norm_shapes(&mut t, &format!("{p}_3x3_bn"), planes);
            t.insert(format!("{p}_1x1_increase.weight"), vec![planes * e, planes, 1, 1]);
            batch_norm_shapes(&mut t, &format!("{p}_1x1_increase_bn"), planes * e);
            if b == 0 {
                t.insert(format!("{p}_1x1_proj.weight"), vec![planes * e, inp, 1, 1]);
                batch_norm_shapes(&mut t, &format!("{p}_1x1_proj_bn"), planes * e);
            }
        }
        t.insert("classifier.weight".into(), vec![classes, config.out_channels()]);
        t.insert("classifier.bias".into(), vec![classes]);
        t
    }

    /// The sizes a checkpoint's shapes give: `(config, classes)`.
    pub fn infer(shape: impl Fn(&str) -> Option<Vec<usize>>) -> Result<(ResNetConfig, usize), String> {
        let get = |n: &str| shape(n).ok_or_else(|| format!("missing tensor `{n}`"));
        let width = get("feat_extract.conv1_7x7_s2.weight")?[0];
        let mut layers = [0; 4];
        for (s, l) in layers.iter_mut().enumerate() {
            *l = (0..).take_while(|&b| shape(&format!("{}_1x1_reduce.weight", ft_dag_block(s, b))).is_some()).count();
            if *l == 0 {
                return Err(format!("missing tensor `{}_1x1_reduce.weight`", ft_dag_block(s, 0)));
            }
        }
        let classes = get("classifier.weight")?[0];
        Ok((ResNetConfig { block: BlockKind::Bottleneck, layers, width, dilate: [false; 3] }, classes))
    }

    /// Builds the oracle from a `weights-convert oracle` file.
    pub fn from_weights(w: &Weights, device: &Device) -> Result<Self, ClassifierError> {
        let kind: String = w.meta("kind")?;
        if kind != ORACLE_KIND {
            return Err(ClassifierError::Config(format!(
                "the weights hold a `{kind}` model, not an attribute oracle (convert it with `weights-convert oracle`)"
            )));
        }
        let classes: usize = w.meta("classes")?;
        Self::load(w, ResNetConfig::from_metadata(w)?, classes, device)
    }

    /// Builds the oracle from weights with the reference's names.
    pub fn load(w: &Weights, config: ResNetConfig, classes: usize, device: &Device) -> Result<Self, ClassifierError> {
        bottleneck_only(&config)?;
        if classes == 0 {
            return Err(ClassifierError::Config("an oracle needs at least one output".into()));
        }
        let e = config.block_expansion();
        let bn = |n: &str, c: usize| BatchNorm2d::load(w, n, c, true, device);
        let cv = |n: &str, cin, cout, k, st, pad| conv2d(w, n, [cin, cout], k, st, pad, 1, false, device);
        let mut blocks = Vec::new();
        for (s, b, inp, planes) in dims(&config) {
            let p = ft_dag_block(s, b);
            let stride = if b == 0 && s > 0 { 2 } else { 1 };
            let downsample = if b == 0 {
                Some((
                    cv(&format!("{p}_1x1_proj"), inp, planes * e, 1, stride, 0)?,
                    bn(&format!("{p}_1x1_proj_bn"), planes * e)?,
                ))
            } else {
                None
            };
            blocks.push(Block {
                conv1: cv(&format!("{p}_1x1_reduce"), inp, planes, 1, stride, 0)?,
                bn1: bn(&format!("{p}_1x1_reduce_bn"), planes)?,
                conv2: cv(&format!("{p}_3x3"), planes, planes, 3, 1, 1)?,
                bn2: bn(&format!("{p}_3x3_bn"), planes)?,
                conv3: Some(cv(&format!("{p}_1x1_increase"), planes, planes * e, 1, 1, 0)?),
                bn3: Some(bn(&format!("{p}_1x1_increase_bn"), planes * e)?),
                downsample,
            });
        }
        let feat_extract = ResNetBackbone {
            conv1: cv("feat_extract.conv1_7x7_s2", 3, config.width, 7, 2, 3)?,
            bn1: bn("feat_extract.conv1_7x7_s2_bn", config.width)?,
            maxpool: max_pool(true, 0),
            blocks,
        };
        let classifier = linear(w, "classifier", [config.out_channels(), classes], device)?;
        w.finish()?;
        Ok(Oracle { feat_extract, classifier, config, classes }.no_grad())
    }

    /// Number of attributes.
    pub fn num_outputs(&self) -> usize {
        self.classes
    }

    /// `[B, 3, 224, 224]` in [-1, 1] (the reference's `Normalize(0.5, 0.5)`) -> `[B, K]`
    /// logits (the reference's probabilities are their sigmoids; a decision is `logit > 0`).
    pub fn logits(&self, x: Tensor<4>) -> Result<Tensor<2>, ClassifierError> {
        check_input(&x)?;
        // 224 -> 7x7 before `pool5_7x7_s1`: the 7x7 average pool is the global mean.
        Ok(self.classifier.forward(global_mean(self.feat_extract.forward(x))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn face_input_is_bgr_minus_mean() {
        // One pixel: R = 1 (255), G = 0 (127.5), B = -1 (0).
        let v = face_input(&[1.0, 0.0, -1.0]);
        assert_eq!(v, vec![0.0 - FACE_MEAN_BGR[0], 127.5 - FACE_MEAN_BGR[1], 255.0 - FACE_MEAN_BGR[2]]);
    }

    #[test]
    fn expected_tensor_counts() {
        let c = ResNetConfig::depth(50).unwrap();
        let face = FaceEmbedder::expected_tensors(&c);
        assert_eq!(face["layer4.0.downsample.0.weight"], vec![2048, 1024, 1, 1]);
        assert!(face.contains_key("conv1.weight") && !face.contains_key("fc.weight"));
        let oracle = Oracle::expected_tensors(&c, 40);
        assert_eq!(oracle["feat_extract.conv5_1_1x1_proj.weight"], vec![2048, 1024, 1, 1]);
        assert_eq!(oracle["classifier.weight"], vec![40, 2048]);
        // Same number of tensors: the two layouts name the same network.
        assert_eq!(face.len() + 2, oracle.len());
        let (inferred, k) = Oracle::infer(|n| oracle.get(n).cloned()).unwrap();
        assert_eq!((inferred, k), (c, 40));
    }
}
