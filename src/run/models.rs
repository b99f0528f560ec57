//! The models of an explanation, the names of their labels and outputs, and the query's
//! label map.

use std::path::Path;

use burn::tensor::Device;
use steex_classifier::any::{output_kind, output_names};
use steex_classifier::{AnyClassifier, DecisionModel, OutputKind};
use steex_deeplab::DeepLabV3;
use steex_explain::presets::{Preset, attribute_names, region_names, resolve};
use steex_explain::{AttributeTarget, ExplainSettings, Objective};
use steex_sean::{SeanConfig, SeanGenerator};

use super::ExplainOptions;
use crate::error::{Error, bad};
use crate::io::{
    Array, LabelMap, WeightsHeader, load_classifier, load_generator, model_err, read_header, read_image,
    segment_to_labels,
};

/// What an explanation's models are, from their files' headers only (no tensor read), with
/// every name and the explainer's settings resolved from [`ExplainOptions`]: enough to check
/// the inputs before the models are loaded ([`Resolved::check_inputs`]).
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The generator's labels.
    pub labels: usize,
    /// The generator's image size `(height, width)`.
    pub image_size: (usize, usize),
    /// How the decision model's logits become probabilities.
    pub output: OutputKind,
    /// The preset the names come from, if any.
    pub preset_name: Option<String>,
    /// Name of every decision output.
    pub attrs: Vec<String>,
    /// Name of every label.
    pub regions_all: Vec<String>,
    /// The explainer's settings.
    pub settings: ExplainSettings,
}

impl Resolved {
    /// Reads both files' headers and resolves names, objective, attribute and regions.
    pub fn read(o: &ExplainOptions) -> Result<Self, Error> {
        let gh = read_header(&o.generator)?;
        let ch = read_header(&o.classifier)?;
        let kind = |h: &WeightsHeader, path: &Path, ok: &[&str], what: &str| -> Result<(), Error> {
            match h.metadata.get("kind") {
                Some(k) if ok.contains(&k.as_str()) => Ok(()),
                found => Err(Error::Model {
                    path: path.to_path_buf(),
                    reason: format!("this is a `{}` file, not {what}", found.map_or("unknown", String::as_str)),
                }),
            }
        };
        kind(&gh, &o.generator, &["sean"], "a SEAN generator (kind `sean`)")?;
        kind(&ch, &o.classifier, &["densenet", "resnet"], "a decision model (kind densenet or resnet)")?;
        let labels: usize = gh.meta(&o.generator, "labels")?;
        let width: usize = gh.meta(&o.generator, "width")?;
        let aspect_ratio: f64 = gh.meta(&o.generator, "aspect_ratio")?;
        let k: usize = ch.meta(&o.classifier, "classes")?;
        if labels == 0 || k == 0 || width < 32 || aspect_ratio.is_nan() || aspect_ratio <= 0.0 {
            return Err(bad(format!(
                "{} / {}: not a generator and a decision model ({labels} labels, width {width}, {k} outputs)",
                o.generator.display(),
                o.classifier.display()
            )));
        }
        let image_size = SeanConfig { width, aspect_ratio, ..SeanConfig::celeba() }.image_size();
        let output = output_kind(&ch.metadata).map_err(model_err(&o.classifier))?;
        let preset_name = o
            .preset
            .clone()
            .or_else(|| gh.metadata.get("preset").cloned())
            .or_else(|| ch.metadata.get("preset").cloned());
        let preset = match &preset_name {
            Some(p) => Some(
                Preset::by_name(p).ok_or_else(|| bad(format!("--preset {p}: expected celeba, celebamhq or bdd")))?,
            ),
            None => None,
        };
        let regions_all = region_names(labels, preset);
        // Without a preset, the names the classifier file records (else output_<i>).
        let attrs = if preset.is_none() { output_names(&ch.metadata, k) } else { attribute_names(k, preset) };
        let one = |item: &str, what: &str, flag: &str| -> Result<usize, Error> {
            resolve(&[item.to_string()], &attrs, what).map(|v| v[0]).map_err(|e| bad(format!("{flag}: {e}")))
        };
        let objective = if let Some(c) = &o.target_class {
            Objective::Class { class: one(c, "class", "--target-class")? }
        } else if let Some(c) = &o.away_from_class {
            Objective::AwayFromClass { class: one(c, "class", "--away-from-class")? }
        } else if !o.attributes.is_empty() {
            let mut targets = Vec::new();
            for item in &o.attributes {
                let (name, value) = item.split_once('=').ok_or_else(|| {
                    bad(format!("--attributes: `{item}`: expected NAME=0 or NAME=1 (for example smile=1,young=0)"))
                })?;
                let target = match value.trim() {
                    "0" => 0,
                    "1" => 1,
                    v => return Err(bad(format!("--attributes: `{item}`: target `{v}`: expected 0 or 1"))),
                };
                targets.push(AttributeTarget { output: one(name, "attribute", "--attributes")?, target });
            }
            Objective::Attributes { targets }
        } else {
            Objective::Attribute
        };
        let attribute = match (&objective, &o.attribute) {
            (Objective::Class { class } | Objective::AwayFromClass { class }, _) => *class,
            (Objective::Attributes { targets }, _) => targets[0].output,
            (Objective::Attribute, _) if output == OutputKind::Softmax => {
                return Err(bad(format!(
                    "{}: this decision model's outputs are one softmax: give --target-class or --away-from-class \
                     (classes: {})",
                    o.classifier.display(),
                    attrs.join(", ")
                )));
            }
            (Objective::Attribute, Some(a)) => one(a, "attribute", "--attribute")?,
            (Objective::Attribute, None) => match preset {
                Some(p) if p.default_attribute < k => p.default_attribute,
                _ => {
                    return Err(bad(format!("--attribute is required (one of {})", attrs.join(", "))));
                }
            },
        };
        objective.check(k, output, attribute).map_err(|e| bad(format!("{}: {e}", o.classifier.display())))?;
        let regions = if !o.regions.is_empty() {
            Some(resolve(&o.regions, &regions_all, "region").map_err(|e| bad(format!("--regions: {e}")))?)
        } else if !o.region_ids.is_empty() {
            let ids: Vec<String> = o.region_ids.iter().map(|i| i.to_string()).collect();
            Some(resolve(&ids, &regions_all, "region").map_err(|e| bad(format!("--region-ids: {e}")))?)
        } else {
            None
        };
        let mut settings = o.settings(attribute, regions);
        settings.objective = objective;
        Ok(Resolved { labels, image_size, output, preset_name, attrs, regions_all, settings })
    }

    /// Checks a query and its mask file against the models before they are loaded: the
    /// image decodes (within the readers' limits), the mask is an 8-bit label map of the
    /// image's aspect ratio (any size) with ids within the generator's labels.
    pub fn check_inputs(&self, image: &Path, mask: Option<&Path>) -> Result<(), Error> {
        read_image(image, self.image_size)?;
        if let Some(m) = mask {
            read_mask(m, image, self.labels)?;
        }
        Ok(())
    }
}

/// Reads a mask file, checked against `labels` and against the shape of `image`: any size
/// of the image's aspect ratio (each is resized to the model's size on its own, as the
/// published loaders do).
fn read_mask(mask_path: &Path, image: &Path, labels: usize) -> Result<LabelMap, Error> {
    let raw = LabelMap::read(mask_path)?;
    raw.check(labels, mask_path)?;
    raw.check_fits(mask_path, image, crate::io::image_size(image)?)?;
    Ok(raw)
}

/// The models on an autodiff device, the names of their labels and outputs, and the
/// settings of the explanation, resolved from [`ExplainOptions`].
pub struct Models {
    /// The generator.
    pub g: SeanGenerator,
    /// The decision model.
    pub c: AnyClassifier,
    /// The preset the names come from, if any.
    pub preset_name: Option<String>,
    /// Name of every decision output.
    pub attrs: Vec<String>,
    /// Name of every label.
    pub regions_all: Vec<String>,
    /// The explainer's settings.
    pub settings: ExplainSettings,
}

impl Models {
    /// Loads the models and resolves names, attribute and regions.
    pub fn load(o: &ExplainOptions, device: &Device) -> Result<Self, Error> {
        Self::load_resolved(o, Resolved::read(o)?, device)
    }

    /// Loads the models `r` was resolved from (`o`'s files).
    pub fn load_resolved(o: &ExplainOptions, r: Resolved, device: &Device) -> Result<Self, Error> {
        let g = load_generator(&o.generator, device)?;
        let c = load_classifier(&o.classifier, device)?;
        let (l, k) = (g.config().labels, c.num_outputs());
        if (l, k, g.config().image_size()) != (r.labels, r.attrs.len(), r.image_size) {
            return Err(bad(format!(
                "{} / {}: the files' metadata does not match their tensors",
                o.generator.display(),
                o.classifier.display()
            )));
        }
        let Resolved { preset_name, attrs, regions_all, settings, .. } = r;
        Ok(Models { g, c, preset_name, attrs, regions_all, settings })
    }

    /// Name of the attribute explained (the class, for a class objective; the first
    /// attribute, for several).
    pub fn attribute_name(&self) -> &str {
        &self.attrs[self.settings.attribute]
    }

    /// The regions that may change, as names joined by commas, or `all`.
    pub fn regions_text(&self) -> String {
        self.settings
            .regions
            .as_ref()
            .map_or("all".to_string(), |v| v.iter().map(|&j| self.regions_all[j].clone()).collect::<Vec<_>>().join(","))
    }
}

/// The label map of a query at the generator's size: from a mask file (the image's aspect ratio,
/// ids within the generator's labels) or from a segmenter run on the query.
pub fn query_labels(
    models: &Models,
    image: &Path,
    query: &Array,
    mask: Option<&Path>,
    segmenter: Option<(&DeepLabV3, Option<&str>, &Path)>,
    device: &Device,
) -> Result<LabelMap, Error> {
    let l = models.g.config().labels;
    let (h, w) = models.g.config().image_size();
    match (mask, segmenter) {
        (Some(mask_path), _) => Ok(read_mask(mask_path, image, l)?.resized_pil(h, w)),
        (None, Some((model, seg_preset, seg))) => {
            let (labels, _, _) = segment_to_labels(model, seg_preset, query, device);
            labels.check(l, seg).map_err(|_| {
                bad(format!(
                    "--segmenter {}: its {} classes do not map onto the generator's {l} labels",
                    seg.display(),
                    model.config().classes
                ))
            })?;
            Ok(labels)
        }
        (None, None) => Err(bad("give --mask or --segmenter".into())),
    }
}
