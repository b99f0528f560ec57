//! The model-specific conversions: each builds a [`ModelSpec`] from the model crate's own
//! description of its tensors, so names and shapes are checked against the model.

use std::path::Path;

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
    let wrong = |reason: String| ConvertError::WrongModel {
        path: path.to_path_buf(),
        kind: "SEAN generator".into(),
        reason,
    };
    let shapes: std::collections::BTreeMap<String, Vec<usize>> = ckpt
        .state_dict_names()
        .into_iter()
        .filter_map(|(n, full)| {
            ckpt.tensors()
                .find(|(f, _, _)| *f == full)
                .map(|(_, _, s)| (n, s.to_vec()))
        })
        .collect();
    let (labels, ngf, style_length) =
        SeanConfig::infer_from_shapes(|n| shapes.get(n).cloned()).map_err(wrong)?;
    let (config, preset) = match size {
        SeanSize::Preset(name) => {
            let p = SeanConfig::preset(name).ok_or_else(|| {
                ConvertError::Argument(format!(
                    "--preset {name}: expected celeba, celebamhq or bdd"
                ))
            })?;
            if (p.labels, p.ngf, p.style_length) != (labels, ngf, style_length) {
                return Err(wrong(format!(
                    "preset {name} has {} labels, ngf {}, style length {}, but the tensors say {labels}, {ngf}, {style_length}",
                    p.labels, p.ngf, p.style_length
                )));
            }
            (p, Some(name.clone()))
        }
        SeanSize::Explicit {
            width,
            aspect_ratio,
        } => (
            SeanConfig {
                labels,
                ngf,
                style_length,
                width: *width,
                aspect_ratio: *aspect_ratio,
            },
            None,
        ),
    };
    config
        .validate()
        .map_err(|e| ConvertError::Argument(format!("--width/--aspect-ratio: {e}")))?;
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
