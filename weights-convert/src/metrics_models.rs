//! Conversions of the evaluation models of `steex metrics`: pytorch-fid's FID Inception, a
//! VGGFace2 face ResNet in torchvision's layout, and the reference's attribute oracle. Names
//! and shapes are checked against the model crates, as for the other models.

use std::collections::BTreeMap;

use steex_classifier::resnet::{BlockKind, ResNetConfig};
use steex_metrics::models::inception::{self, InceptionConfig};
use steex_metrics::models::{FACE_KIND, FaceEmbedder, ORACLE_KIND, Oracle};

use crate::checkpoint::Checkpoint;
use crate::convert::{Converted, ModelSpec, convert_state_dict, is_num_batches_tracked};
use crate::error::{ConvertError, Result};

/// Shapes of the state dict's tensors, by their names within it.
fn shapes(ckpt: &Checkpoint) -> BTreeMap<String, Vec<usize>> {
    let all: BTreeMap<&str, Vec<usize>> = ckpt.tensors().map(|(n, _, s)| (n, s.to_vec())).collect();
    ckpt.state_dict_names().into_iter().filter_map(|(n, full)| all.get(full.as_str()).map(|s| (n, s.clone()))).collect()
}

fn wrong(ckpt: &Checkpoint, kind: &str) -> impl Fn(String) -> ConvertError {
    let path = ckpt.path().to_path_buf();
    let kind = kind.to_string();
    move |reason| ConvertError::WrongModel { path: path.clone(), kind: kind.clone(), reason }
}

fn fc_or_counter(name: &str) -> bool {
    is_num_batches_tracked(name) || name == "fc.weight" || name == "fc.bias"
}

/// Converts pytorch-fid's FID Inception (`pt_inception-2015-12-05-*.pth`, a bare state dict of
/// torchvision's Inception3 with the FID blocks); `fc.*` (1008 classes) is dropped.
pub fn convert_inception(ckpt: &Checkpoint) -> Result<Converted> {
    let s = shapes(ckpt);
    let config = InceptionConfig::infer(|n| s.get(n).cloned()).map_err(wrong(ckpt, "FID Inception-v3"))?;
    let spec = ModelSpec {
        kind: inception::KIND.into(),
        expected: config.expected_tensors(),
        unused: fc_or_counter,
        config: config.to_metadata(),
    };
    convert_state_dict(ckpt, Some(&spec))
}

/// Converts a face-recognition ResNet (VGGFace2) in torchvision's layout (`conv1.weight`,
/// `layer1.0.conv1.weight`, ..., `fc.*`, no prefix); bottleneck blocks, depth and width from
/// the tensors; `fc.*` (identities) is dropped: the embedding is the pooled feature.
pub fn convert_face(ckpt: &Checkpoint) -> Result<Converted> {
    let s = shapes(ckpt);
    let err = wrong(ckpt, "face ResNet (torchvision layout)");
    // torchvision's names with a `x.` prefix, so the decision ResNet's inference applies.
    let config = ResNetConfig::infer("x", |n| n.strip_prefix("x.").and_then(|n| s.get(n).cloned())).map_err(&err)?;
    if config.block != BlockKind::Bottleneck {
        return Err(err("expected bottleneck blocks (ResNet-50 or deeper), found basic blocks".into()));
    }
    let spec = ModelSpec {
        kind: FACE_KIND.into(),
        expected: FaceEmbedder::expected_tensors(&config),
        unused: fc_or_counter,
        config: config.to_metadata(),
    };
    convert_state_dict(ckpt, Some(&spec))
}

/// Converts the reference's attribute oracle (`checkpoint.tar` of `OracleResnet`:
/// `feat_extract.*` of `Resnet50_ft_dag` and `classifier.*`).
pub fn convert_oracle(ckpt: &Checkpoint) -> Result<Converted> {
    let s = shapes(ckpt);
    let (config, classes) =
        Oracle::infer(|n| s.get(n).cloned()).map_err(wrong(ckpt, "attribute oracle (OracleResnet)"))?;
    let mut meta = config.to_metadata();
    meta.insert("classes".into(), classes.to_string());
    let spec = ModelSpec {
        kind: ORACLE_KIND.into(),
        expected: Oracle::expected_tensors(&config, classes),
        unused: is_num_batches_tracked,
        config: meta,
    };
    convert_state_dict(ckpt, Some(&spec))
}
