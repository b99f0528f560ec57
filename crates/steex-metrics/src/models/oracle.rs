//! The reference's attribute oracle (MNAC).

use std::collections::BTreeMap;

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use steex_nn::{BatchNorm2d, ConvSpec, Weights, batch_norm_shapes, load_linear};
use steex_resnet::{Block, BlockKind, ResNetBackbone, ResNetConfig};

use super::{EvaluatorError, ORACLE_KIND, bottleneck_only, check_input, global_mean, max_pool};

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
        let e = config.block.expansion();
        t.insert("feat_extract.conv1_7x7_s2.weight".into(), vec![config.width, 3, 7, 7]);
        batch_norm_shapes(&mut t, "feat_extract.conv1_7x7_s2_bn", config.width);
        for size in config.block_sizes() {
            let (b, inp, planes) = (size.index, size.inplanes, size.planes);
            let p = ft_dag_block(size.stage, b);
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
    pub fn from_weights(w: &Weights, device: &Device) -> Result<Self, EvaluatorError> {
        w.kind(&[ORACLE_KIND], "an attribute oracle (convert it with `weights-convert oracle`)")?;
        let classes: usize = w.meta("classes")?;
        Self::load(w, ResNetConfig::from_metadata(w)?, classes, device)
    }

    /// Builds the oracle from weights with the reference's names.
    pub fn load(w: &Weights, config: ResNetConfig, classes: usize, device: &Device) -> Result<Self, EvaluatorError> {
        bottleneck_only(&config)?;
        if classes == 0 {
            return Err(EvaluatorError::Config("an oracle needs at least one output".into()));
        }
        let e = config.block.expansion();
        let bn = |n: &str, c: usize| BatchNorm2d::load(&w.pp(n), c, true, device);
        let cv = |n: &str, cin, cout, k, st, pad| {
            ConvSpec::new([cin, cout], k).with_stride(st).with_padding(pad).with_bias(false).load(&w.pp(n), device)
        };
        let mut blocks = Vec::new();
        for size in config.block_sizes() {
            let (b, inp, planes, stride) = (size.index, size.inplanes, size.planes, size.stride);
            let p = ft_dag_block(size.stage, b);
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
        let classifier = load_linear(&w.pp("classifier"), [config.out_channels(), classes], device)?;
        w.finish()?;
        Ok(Oracle { feat_extract, classifier, config, classes }.no_grad())
    }

    /// Number of attributes.
    pub fn num_outputs(&self) -> usize {
        self.classes
    }

    /// Attribute logits of images in [-1, 1] (the reference's `Normalize(0.5, 0.5)`); the
    /// reference's probabilities are their sigmoids, a decision is `logit > 0`.
    ///
    /// # Shapes
    /// - input: `[B, 3, 224, 224]`
    /// - output: `[B, K]`
    pub fn logits(&self, x: Tensor<4>) -> Result<Tensor<2>, EvaluatorError> {
        check_input(&x)?;
        // 224 -> 7x7 before `pool5_7x7_s1`: the 7x7 average pool is the global mean.
        Ok(self.classifier.forward(global_mean(self.feat_extract.forward(x))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{FACE_MEAN_BGR, FaceEmbedder, face_input};

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
