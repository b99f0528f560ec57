//! The models a server explains with, loaded once: the bundled demo models or converted
//! files, with their names. Turns uploads and demo scenes into queries (image and label map
//! at the generator's size, with the decision model's scores); `super::explain` runs the
//! explanations.

use std::path::PathBuf;

use burn::tensor::Device;
use image::RgbImage;
use serde::Serialize;
use steex_classifier::{AnyClassifier, DecisionModel, OutputKind};
use steex_deeplab::DeepLabV3;
use steex_io::{Array, LabelMap};
use steex_sean::{NoiseMode, SeanGenerator};

use super::error::{ApiError, ApiResult};
use super::upload::MAX_UPLOAD_BYTES;
use crate::io::{load_classifier, load_generator, load_segmenter, read_header, segment_to_labels};
use crate::render::{label_colour, png};
use crate::results::Inputs;
use crate::run::{ExplainOptions, Resolved};

/// One label of the generator, with the colour the page draws it in.
#[derive(Debug, Clone, Serialize)]
pub struct RegionInfo {
    /// Label id.
    pub id: usize,
    /// Its name.
    pub name: String,
    /// `#rrggbb`, as `steex segment`'s preview colours it.
    pub colour: String,
}

/// The optimisation a job gets when its request leaves a value out.
#[derive(Debug, Clone, Serialize)]
pub struct Defaults {
    /// Adam updates.
    pub steps: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Weight of the proximity term.
    pub lambda_prox: f64,
    /// Adam's epsilon (`null`: the published 1e-8).
    pub adam_eps: Option<f64>,
    /// An intermediate image every this many steps (0: none).
    pub frame_every: usize,
}

/// What `GET /api/info` answers: the models' names and sizes.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// `demo` (the bundled synthetic-world models) or `files`.
    pub mode: &'static str,
    /// The preset the names come from, if any.
    pub preset: Option<String>,
    /// The generator's image height.
    pub height: usize,
    /// The generator's image width.
    pub width: usize,
    /// Every label of the generator.
    pub regions: Vec<RegionInfo>,
    /// Every decision output.
    pub attributes: Vec<String>,
    /// `sigmoid` (one decision per attribute) or `softmax` (one class).
    pub output: &'static str,
    /// An uploaded image without a mask is segmented.
    pub segmenter: bool,
    /// The optimisation when a request leaves it out.
    pub defaults: Defaults,
    /// The largest upload, in bytes.
    pub max_upload_bytes: usize,
}

/// An image ready to explain: at the generator's size, with its label map (if known) and
/// the decision model's scores.
pub struct QueryData {
    /// `[1, 3, H, W]` in [-1, 1].
    pub image: Array,
    /// The label map at the generator's size; `None` until a mask is given (no segmenter).
    pub labels: Option<LabelMap>,
    /// `scene`, `mask` or `segmenter`.
    pub labels_source: Option<&'static str>,
    /// The uploaded image's own size `(height, width)`, which a mask must match in shape.
    pub native_size: (usize, usize),
    /// Decision logits.
    pub logits: Vec<f32>,
    /// Probabilities (softmax or sigmoids).
    pub probabilities: Vec<f32>,
}

/// The loaded models and their names.
pub struct Engine {
    pub(super) device: Device,
    pub(super) g: SeanGenerator,
    pub(super) c: AnyClassifier,
    seg: Option<(DeepLabV3, Option<String>)>,
    pub(super) info: ModelInfo,
    pub(super) regions_all: Vec<String>,
    pub(super) noise: NoiseMode,
    pub(super) inputs: Inputs,
}

fn colour_hex(i: usize) -> String {
    let c = label_colour(i).0;
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

impl Engine {
    /// The bundled synthetic-world models (no files), on `device` (made autodiff here).
    pub fn demo(device: &Device) -> crate::Result<Self> {
        let device = device.clone().autodiff();
        let m = crate::demo::DemoModels::load(&device)?;
        let regions_all: Vec<String> = steex_synth::scene::REGIONS.iter().map(|s| s.to_string()).collect();
        let (height, width) = m.generator.config().image_size();
        let demo = crate::demo::DemoOptions::default();
        let info = ModelInfo {
            mode: "demo",
            preset: None,
            height,
            width,
            regions: regions(&regions_all),
            attributes: vec![steex_synth::scene::ATTRIBUTE.to_string()],
            output: "sigmoid",
            segmenter: true,
            defaults: Defaults {
                steps: demo.steps,
                lr: demo.lr,
                lambda_prox: demo.lambda_prox,
                adam_eps: Some(demo.adam_eps),
                frame_every: 2,
            },
            max_upload_bytes: MAX_UPLOAD_BYTES,
        };
        let bundled = |w: &str| PathBuf::from(format!("<bundled {w}>"));
        Ok(Engine {
            device,
            g: m.generator,
            c: m.classifier,
            seg: Some((m.segmenter, None)),
            info,
            regions_all,
            noise: NoiseMode::Off,
            inputs: Inputs {
                generator: bundled("generator"),
                classifier: bundled("classifier"),
                segmenter: Some(bundled("segmenter")),
                ..Default::default()
            },
        })
    }

    /// Converted models: a generator, a decision model and optionally a segmenter. The
    /// files' headers are checked (kinds, names, sizes) before any model is loaded.
    pub fn files(
        generator: PathBuf,
        classifier: PathBuf,
        segmenter: Option<PathBuf>,
        device: &Device,
    ) -> crate::Result<Self> {
        let gh = read_header(&generator)?;
        let softmax = read_header(&classifier)?.metadata.get("output").is_some_and(|o| o == "softmax");
        let options = ExplainOptions {
            generator: generator.clone(),
            classifier: classifier.clone(),
            attribute: (!softmax).then(|| "0".to_string()),
            attributes: Vec::new(),
            target_class: softmax.then(|| "0".to_string()),
            away_from_class: None,
            regions: Vec::new(),
            region_ids: Vec::new(),
            steps: 100,
            lr: 0.01,
            lambda_prox: 0.3,
            noise: NoiseMode::Seeded(0),
            early_stop: None,
            target: None,
            preset: None,
        };
        let r = Resolved::read(&options)?;
        if let Some(s) = &segmenter {
            let h = read_header(s)?;
            if h.metadata.get("kind").is_some_and(|k| k != "deeplab") {
                return Err(crate::Error::Model { path: s.clone(), reason: "not a segmenter (kind deeplab)".into() });
            }
        }
        // Without a preset, the names the generator records (`regions`), else `label_<i>`.
        let mut regions_all = r.regions_all.clone();
        if r.preset_name.is_none()
            && let Some(names) = gh.metadata.get("regions")
        {
            let names: Vec<String> = names.split(',').map(|n| n.trim().to_string()).collect();
            if names.len() == r.labels && names.iter().all(|n| !n.is_empty()) {
                regions_all = names;
            }
        }
        let device = device.clone().autodiff();
        let g = load_generator(&generator, &device)?;
        let c = load_classifier(&classifier, &device)?;
        let seg = match &segmenter {
            Some(p) => Some(load_segmenter(p, &device)?),
            None => None,
        };
        let info = ModelInfo {
            mode: "files",
            preset: r.preset_name.clone(),
            height: r.image_size.0,
            width: r.image_size.1,
            regions: regions(&regions_all),
            attributes: r.attrs.clone(),
            output: if r.output == OutputKind::Softmax { "softmax" } else { "sigmoid" },
            segmenter: seg.is_some(),
            defaults: Defaults { steps: 100, lr: 0.01, lambda_prox: 0.3, adam_eps: None, frame_every: 5 },
            max_upload_bytes: MAX_UPLOAD_BYTES,
        };
        Ok(Engine {
            device,
            g,
            c,
            seg,
            info,
            regions_all,
            noise: NoiseMode::Seeded(0),
            inputs: Inputs { generator, classifier, segmenter, ..Default::default() },
        })
    }

    /// The models' names and sizes.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Name of every label.
    pub fn region_names(&self) -> &[String] {
        &self.regions_all
    }

    pub(super) fn size(&self) -> (usize, usize) {
        (self.info.height, self.info.width)
    }

    /// Logits and probabilities of an image `[1, 3, H, W]`.
    pub fn classify(&self, image: &Array) -> (Vec<f32>, Vec<f32>) {
        let logits = steex_nn::host(self.c.logits(image.to_tensor::<4>(&self.device)).detach());
        let probabilities = self.c.output_kind().probabilities(&logits);
        (logits, probabilities)
    }

    /// Demo scene `seed` (its true label map) as a query.
    pub fn scene_query(&self, seed: u64) -> ApiResult<QueryData> {
        if self.info.mode != "demo" {
            return Err(ApiError::NotFound("demo scenes are served with --demo only".into()));
        }
        let s = steex_synth::scene::scene(seed);
        let (h, w) = self.size();
        let image = Array { shape: vec![1, 3, h, w], data: s.image };
        let (logits, probabilities) = self.classify(&image);
        let labels = LabelMap { height: h, width: w, labels: s.labels };
        Ok(QueryData {
            image,
            labels: Some(labels),
            labels_source: Some("scene"),
            native_size: (h, w),
            logits,
            probabilities,
        })
    }

    /// An uploaded image as a query: resized to the generator's size (bicubic, as the
    /// commands), segmented when the server has a segmenter.
    pub fn upload_query(&self, rgb: RgbImage) -> ApiResult<QueryData> {
        let (h, w) = self.size();
        let native_size = (rgb.height() as usize, rgb.width() as usize);
        let rgb =
            if rgb.dimensions() != (w as u32, h as u32) { steex_io::resize::bicubic_rgb(&rgb, w, h) } else { rgb };
        let mut data = vec![0f32; 3 * h * w];
        for (x, y, p) in rgb.enumerate_pixels() {
            for c in 0..3 {
                data[c * h * w + y as usize * w + x as usize] = p[c] as f32 / 127.5 - 1.0;
            }
        }
        let image = Array { shape: vec![1, 3, h, w], data };
        let (logits, probabilities) = self.classify(&image);
        let labels = match &self.seg {
            Some((model, preset)) => {
                let (labels, _, _) = segment_to_labels(model, preset.as_deref(), &image, &self.device);
                let l = self.regions_all.len();
                if labels.labels.iter().any(|&v| v != 255 && v as usize >= l) {
                    return Err(ApiError::Internal(format!(
                        "the segmenter's {} classes do not map onto the generator's {l} labels",
                        model.config().classes
                    )));
                }
                Some(labels)
            }
            None => None,
        };
        let labels_source = labels.as_ref().map(|_| "segmenter");
        Ok(QueryData { image, labels, labels_source, native_size, logits, probabilities })
    }

    /// Checks an uploaded mask against a query (the image's aspect ratio, ids within the
    /// generator's labels) and returns it at the generator's size (nearest, as Pillow).
    pub fn fit_mask(&self, mask: LabelMap, native_size: (usize, usize)) -> ApiResult<LabelMap> {
        let l = self.regions_all.len();
        if let Some(i) = mask.labels.iter().position(|&v| v != 255 && v as usize >= l) {
            return Err(ApiError::Unprocessable(format!(
                "the mask: label id {} at pixel (x {}, y {}) is out of range: the generator has {l} labels \
                 (0..={}, or 255 for unknown)",
                mask.labels[i],
                i % mask.width,
                i / mask.width,
                l - 1
            )));
        }
        if !steex_io::resize::same_aspect((mask.height, mask.width), native_size) {
            return Err(ApiError::Unprocessable(format!(
                "the mask is {}x{} (W x H) but the image is {}x{}: their aspect ratios differ",
                mask.width, mask.height, native_size.1, native_size.0
            )));
        }
        let (h, w) = self.size();
        Ok(mask.resized_pil(h, w))
    }

    /// A label map coloured as the page draws it (PNG).
    pub fn overlay_png(&self, labels: &LabelMap) -> Vec<u8> {
        let mut img = RgbImage::new(labels.width as u32, labels.height as u32);
        for (i, &v) in labels.labels.iter().enumerate() {
            img.put_pixel((i % labels.width) as u32, (i / labels.width) as u32, label_colour(v as usize));
        }
        png(&img)
    }
}

fn regions(names: &[String]) -> Vec<RegionInfo> {
    names.iter().enumerate().map(|(id, n)| RegionInfo { id, name: n.clone(), colour: colour_hex(id) }).collect()
}
