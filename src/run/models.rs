//! The models of an explanation, the names of their labels and outputs, and the query's
//! label map.

use std::path::Path;

use burn::tensor::Device;
use steex_classifier::{AnyClassifier, DecisionModel};
use steex_deeplab::DeepLabV3;
use steex_explain::ExplainSettings;
use steex_explain::presets::{Preset, attribute_names, region_names, resolve};
use steex_sean::SeanGenerator;

use super::ExplainOptions;
use crate::error::{Error, bad};
use crate::io::{Array, LabelMap, load_classifier, load_generator, read_weights, segment_to_labels};

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
        let gw = read_weights(&o.generator)?;
        let cw = read_weights(&o.classifier)?;
        let preset_name =
            o.preset.clone().or_else(|| gw.meta::<String>("preset").ok()).or_else(|| cw.meta::<String>("preset").ok());
        let preset = match &preset_name {
            Some(p) => Some(
                Preset::by_name(p).ok_or_else(|| bad(format!("--preset {p}: expected celeba, celebamhq or bdd")))?,
            ),
            None => None,
        };
        drop((gw, cw));
        let g = load_generator(&o.generator, device)?;
        let c = load_classifier(&o.classifier, device)?;
        let l = g.config().labels;
        let k = c.num_outputs();
        let regions_all = region_names(l, preset);
        // Without a preset, the names the classifier file records (else output_<i>).
        let attrs =
            if preset.is_none() && c.names().len() == k { c.names().to_vec() } else { attribute_names(k, preset) };
        let attribute = match &o.attribute {
            Some(a) => {
                resolve(std::slice::from_ref(a), &attrs, "attribute").map_err(|e| bad(format!("--attribute: {e}")))?[0]
            }
            None => match preset {
                Some(p) if p.default_attribute < k => p.default_attribute,
                _ => {
                    return Err(bad(format!("--attribute is required (one of {})", attrs.join(", "))));
                }
            },
        };
        let regions = if !o.regions.is_empty() {
            Some(resolve(&o.regions, &regions_all, "region").map_err(|e| bad(format!("--regions: {e}")))?)
        } else if !o.region_ids.is_empty() {
            let ids: Vec<String> = o.region_ids.iter().map(|i| i.to_string()).collect();
            Some(resolve(&ids, &regions_all, "region").map_err(|e| bad(format!("--region-ids: {e}")))?)
        } else {
            None
        };
        let settings = o.settings(attribute, regions);
        Ok(Models { g, c, preset_name, attrs, regions_all, settings })
    }

    /// Name of the attribute explained.
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

/// The label map of a query at the generator's size: from a mask file (the image's size,
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
        (Some(mask_path), _) => {
            let raw = LabelMap::read(mask_path)?;
            raw.check(l, mask_path)?;
            let (ih, iw) = crate::io::image_size(image)?;
            if (ih, iw) != (raw.height, raw.width) {
                return Err(bad(format!(
                    "mask {} is {}x{} but image {} is {iw}x{ih} (W x H): they must be the same size",
                    mask_path.display(),
                    raw.width,
                    raw.height,
                    image.display()
                )));
            }
            Ok(raw.resized(h, w))
        }
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
