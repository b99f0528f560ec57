//! The model-specific conversions: each builds a [`ModelSpec`] from the model crate's own
//! description of its tensors, so names and shapes are checked against the model.

use std::path::Path;

use std::collections::BTreeMap;

use steex_classifier::{DenseNetConfig, OutputKind, ResNet, ResNetConfig};
use steex_sean::SeanConfig;

use crate::checkpoint::Checkpoint;
use crate::convert::{Converted, ModelSpec, convert_state_dict};
use crate::error::{ConvertError, Result};

/// Width and aspect ratio of a SEAN generator (not in its tensors): a preset or explicit.
#[derive(Debug, Clone, PartialEq)]
pub enum SeanSize {
    /// `celeba`, `celebamhq` or `bdd`.
    Preset(String),
    /// Output width (a multiple of 32) and width / height.
    Explicit { width: usize, aspect_ratio: f64 },
}

/// Converts a SEAN generator checkpoint (`latest_net_G.pth`, a bare state dict).
/// Labels, ngf and style length come from the tensor shapes.
pub fn convert_sean(ckpt: &Checkpoint, size: &SeanSize) -> Result<Converted> {
    let path = ckpt.path();
    let wrong =
        |reason: String| ConvertError::WrongModel { path: path.to_path_buf(), kind: "SEAN generator".into(), reason };
    let shapes: std::collections::BTreeMap<String, Vec<usize>> = ckpt
        .state_dict_names()
        .into_iter()
        .filter_map(|(n, full)| ckpt.tensors().find(|(f, _, _)| *f == full).map(|(_, _, s)| (n, s.to_vec())))
        .collect();
    let (labels, ngf, style_length) = SeanConfig::infer_from_shapes(|n| shapes.get(n).cloned()).map_err(wrong)?;
    let spade_hidden = SeanConfig::infer_spade_hidden(|n| shapes.get(n).cloned()).map_err(wrong)?;
    let encoder_ngf = SeanConfig::infer_encoder_ngf(|n| shapes.get(n).cloned()).map_err(wrong)?;
    let (config, preset) = match size {
        SeanSize::Preset(name) => {
            let p = SeanConfig::preset(name)
                .ok_or_else(|| ConvertError::Argument(format!("--preset {name}: expected celeba, celebamhq or bdd")))?;
            let want = (p.labels, p.ngf, p.style_length, p.spade_hidden, p.encoder_ngf);
            if want != (labels, ngf, style_length, spade_hidden, encoder_ngf) {
                return Err(wrong(format!(
                    "preset {name} has {} labels, ngf {}, style length {}, SPADE width {}, encoder width {}, \
                     but the tensors say {labels}, {ngf}, {style_length}, {spade_hidden}, {encoder_ngf}",
                    p.labels, p.ngf, p.style_length, p.spade_hidden, p.encoder_ngf
                )));
            }
            (p, Some(name.clone()))
        }
        SeanSize::Explicit { width, aspect_ratio } => {
            let config = SeanConfig {
                labels,
                ngf,
                style_length,
                width: *width,
                aspect_ratio: *aspect_ratio,
                spade_hidden,
                encoder_ngf,
            };
            (config, None)
        }
    };
    config.validate().map_err(|e| ConvertError::Argument(format!("--width/--aspect-ratio: {e}")))?;
    let mut meta = config.to_metadata();
    if let Some(p) = preset {
        meta.insert("preset".into(), p);
    }
    let spec = ModelSpec {
        kind: steex_sean::generator::KIND.into(),
        expected: config.expected_tensors(),
        unused: SeanConfig::is_unused,
        config: meta,
    };
    convert_state_dict(ckpt, Some(&spec))
}

/// Opens `input` and converts it as a SEAN generator.
pub fn convert_sean_file(input: &Path, size: &SeanSize) -> Result<Converted> {
    convert_sean(&Checkpoint::open(input)?, size)
}

/// Shapes of the state dict's tensors, by their names within it.
fn state_dict_shapes(ckpt: &Checkpoint) -> BTreeMap<String, Vec<usize>> {
    let all: BTreeMap<&str, Vec<usize>> = ckpt.tensors().map(|(n, _, s)| (n, s.to_vec())).collect();
    ckpt.state_dict_names().into_iter().filter_map(|(n, full)| all.get(full.as_str()).map(|s| (n, s.clone()))).collect()
}

/// Metadata key of a decision model's output kind (`sigmoid` or `softmax`).
pub const META_OUTPUT: &str = "output";

/// Attribute-name presets a decision model may be tagged with.
pub const DECISION_PRESETS: &[&str] = &["celeba", "celebamhq", "bdd"];

fn check_preset(preset: Option<&str>, classes: usize) -> Result<()> {
    if let Some(p) = preset {
        if !DECISION_PRESETS.contains(&p) {
            return Err(ConvertError::Argument(format!(
                "--preset {p}: expected one of {}",
                DECISION_PRESETS.join(", ")
            )));
        }
        let want = if p == "bdd" { 4 } else { 3 };
        if classes != want {
            return Err(ConvertError::Argument(format!(
                "--preset {p} has {want} decision outputs, the checkpoint has {classes}"
            )));
        }
    }
    Ok(())
}

/// Converts a DenseNet decision model (`checkpoint.tar` of `DecisionDensenetModel`) with
/// independent sigmoid outputs, as published; see [`convert_densenet_as`].
pub fn convert_densenet(ckpt: &Checkpoint, preset: Option<&str>) -> Result<Converted> {
    convert_densenet_as(ckpt, preset, OutputKind::Sigmoid)
}

/// Converts a DenseNet decision model (`checkpoint.tar` of `DecisionDensenetModel`); the
/// configuration comes from the tensor shapes, the output kind (recorded as the `output`
/// metadata entry) from the caller.
pub fn convert_densenet_as(ckpt: &Checkpoint, preset: Option<&str>, output: OutputKind) -> Result<Converted> {
    let shapes = state_dict_shapes(ckpt);
    let config = DenseNetConfig::infer(|n| shapes.get(n).cloned()).map_err(|reason| ConvertError::WrongModel {
        path: ckpt.path().to_path_buf(),
        kind: "DenseNet decision model".into(),
        reason,
    })?;
    check_preset(preset, config.classes)?;
    let mut meta = config.to_metadata();
    if let Some(p) = preset {
        meta.insert("preset".into(), p.into());
    }
    meta.insert(META_OUTPUT.into(), output.name().into());
    let spec = ModelSpec {
        kind: steex_classifier::densenet::KIND.into(),
        expected: config.expected_tensors(),
        unused: crate::convert::is_num_batches_tracked,
        config: meta,
    };
    convert_state_dict(ckpt, Some(&spec))
}

/// Converts a ResNet decision model with independent sigmoid outputs, as published; see
/// [`convert_resnet_as`].
pub fn convert_resnet(ckpt: &Checkpoint, preset: Option<&str>) -> Result<Converted> {
    convert_resnet_as(ckpt, preset, OutputKind::Sigmoid)
}

/// Converts a ResNet decision model: the published wrapper's `checkpoint.tar`
/// (`DecisionResnetModel`, tensors `resnet.*`) or a plain torchvision classifier's state
/// dict (`conv1.weight` ... `fc.weight`, as `torch.save(model.state_dict())` writes it),
/// which is written under the wrapper's names. Block kind, depth and width come from the
/// tensor names and shapes; the output kind (recorded as the `output` metadata entry) from
/// the caller.
pub fn convert_resnet_as(ckpt: &Checkpoint, preset: Option<&str>, output: OutputKind) -> Result<Converted> {
    let shapes = state_dict_shapes(ckpt);
    let wrong = |reason: String| ConvertError::WrongModel {
        path: ckpt.path().to_path_buf(),
        kind: "ResNet decision model".into(),
        reason,
    };
    // A plain torchvision state dict: the wrapper's names less `resnet.`.
    let plain = !shapes.contains_key("resnet.fc.weight") && shapes.contains_key("fc.weight");
    let lookup = |n: &str| -> Option<Vec<usize>> {
        if plain { n.strip_prefix("resnet.").and_then(|m| shapes.get(m)).cloned() } else { shapes.get(n).cloned() }
    };
    let config = ResNetConfig::infer("resnet", lookup).map_err(wrong)?;
    let classes =
        lookup("resnet.fc.weight").map(|s| s[0]).ok_or_else(|| wrong("missing tensor `resnet.fc.weight`".into()))?;
    check_preset(preset, classes)?;
    let mut meta = config.to_metadata();
    meta.insert("classes".into(), classes.to_string());
    if let Some(p) = preset {
        meta.insert("preset".into(), p.into());
    }
    meta.insert(META_OUTPUT.into(), output.name().into());
    if plain {
        meta.insert("layout".into(), "torchvision".into());
    }
    let expected = ResNet::expected_tensors(&config, classes)
        .into_iter()
        .map(|(n, s)| (if plain { n.strip_prefix("resnet.").unwrap_or(&n).to_string() } else { n }, s))
        .collect();
    let spec = ModelSpec {
        kind: steex_classifier::resnet::KIND.into(),
        expected,
        unused: crate::convert::is_num_batches_tracked,
        config: meta,
    };
    let mut converted = convert_state_dict(ckpt, Some(&spec))?;
    if plain {
        converted.tensors =
            std::mem::take(&mut converted.tensors).into_iter().map(|(n, t)| (format!("resnet.{n}"), t)).collect();
    }
    Ok(converted)
}

/// Converts a DeepLabV3 segmenter (`checkpoint.tar` of torchvision's `deeplabv3_resnet50/101`,
/// no auxiliary head); backbone depth and class count come from the tensors.
pub fn convert_deeplab(ckpt: &Checkpoint, preset: Option<&str>) -> Result<Converted> {
    let shapes = state_dict_shapes(ckpt);
    let config = steex_deeplab::DeepLabConfig::infer(|n| shapes.get(n).cloned()).map_err(|reason| {
        ConvertError::WrongModel { path: ckpt.path().to_path_buf(), kind: "DeepLabV3 segmenter".into(), reason }
    })?;
    if let Some(p) = preset {
        let want = if p == "bdd" { 20 } else { 19 };
        if !DECISION_PRESETS.contains(&p) || config.classes != want {
            return Err(ConvertError::Argument(format!(
                "--preset {p}: expected celeba, celebamhq (19 classes) or bdd (20 classes); the checkpoint has {} classes",
                config.classes
            )));
        }
    }
    let mut meta = config.to_metadata();
    if let Some(p) = preset {
        meta.insert("preset".into(), p.into());
    }
    let spec = ModelSpec {
        kind: steex_deeplab::KIND.into(),
        expected: config.expected_tensors(),
        unused: crate::convert::is_num_batches_tracked,
        config: meta,
    };
    convert_state_dict(ckpt, Some(&spec))
}
