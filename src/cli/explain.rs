//! `steex explain`, and the pieces `steex explain-dir` shares with it: the options, the
//! models and names, the query's label map, and the result folder of one image.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use steex::Error;
use steex::classifier::{AnyClassifier, DecisionModel};
use steex::deeplab::DeepLabV3;
use steex::explain::presets::{Preset, attribute_names, region_names, resolve};
use steex::explain::{AdamConfig, ExplainSettings, Explanation, ImageResult, explain};
use steex::io::{
    Array, LabelMap, load_classifier, load_generator, load_segmenter, read_image, read_weights, segment_to_labels,
    write_npy,
};
use steex::outdir::OutDir;
use steex::render::{difference_map, panel_row, png, to_rgb};
use steex::sean::{NoiseMode, SeanGenerator};

/// The models and optimisation options `steex explain` and `steex explain-dir` share.
#[derive(clap::Args, Debug, Clone)]
pub struct ExplainOptions {
    /// Generator weights (`weights-convert sean`).
    #[arg(long)]
    pub generator: PathBuf,
    /// Decision model weights (`weights-convert densenet|resnet`).
    #[arg(long)]
    pub classifier: PathBuf,
    /// Decision output to explain, by name (`smile`) or id; default: the preset's.
    #[arg(long)]
    pub attribute: Option<String>,
    /// Only these regions may change, by name (`mouth,hair`).
    #[arg(long, value_delimiter = ',', conflicts_with = "region_ids")]
    pub regions: Vec<String>,
    /// Only these label ids may change (`10,13`).
    #[arg(long, value_delimiter = ',')]
    pub region_ids: Vec<usize>,
    /// Adam updates.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// Weight of the proximity loss.
    #[arg(long, default_value_t = 0.3)]
    pub lambda_prox: f64,
    /// ACE noise: off, reference (fresh draws, as published) or seed:N.
    #[arg(long, default_value = "seed:0")]
    pub noise: NoiseMode,
    /// Stop once the decision has flipped and stayed flipped for K steps.
    #[arg(long)]
    pub early_stop: Option<usize>,
    /// Ask for this decision (0 or 1) instead of the opposite of the query's.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub target: Option<u8>,
    /// Names of regions and attributes: celeba, celebamhq or bdd (default: from the
    /// weights' metadata, else from the label and output counts).
    #[arg(long)]
    pub preset: Option<String>,
}

/// Arguments of `steex explain`.
#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// Query image: PNG/JPEG (resized bicubic to the generator's size) or `.npy`
    /// float32 [1, 3, H, W] in [-1, 1].
    #[arg(long)]
    pub image: PathBuf,
    /// Label map of the query: 8-bit single-channel PNG, the image's size.
    #[arg(long, required_unless_present = "segmenter", conflicts_with = "segmenter")]
    pub mask: Option<PathBuf>,
    /// Segment the query with this segmenter (`weights-convert deeplab`) instead of --mask.
    #[arg(long)]
    pub segmenter: Option<PathBuf>,
    #[command(flatten)]
    pub options: ExplainOptions,
    /// Result folder (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace a non-empty result folder.
    #[arg(long)]
    pub force: bool,
}

pub(crate) fn bad(m: String) -> Error {
    Error::Argument(m)
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
        let settings = ExplainSettings {
            attribute,
            steps: o.steps,
            adam: AdamConfig { lr: o.lr, ..Default::default() },
            lambda_prox: o.lambda_prox,
            noise: o.noise,
            early_stop: o.early_stop,
            target: o.target,
            regions,
        };
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
            let (ih, iw) = steex::io::image_size(image)?;
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

/// Image `i` of a batched [`Explanation`]: counterfactual and reconstruction `[1, 3, H, W]`,
/// codes `[1, L, S]`.
pub struct ImageArrays {
    /// The generator on the final codes.
    pub counterfactual: Array,
    /// The generator on the initial codes.
    pub reconstruction: Array,
    /// Encoded codes.
    pub z_initial: Array,
    /// Optimised codes.
    pub z_final: Array,
}

/// Splits a batched explanation into one [`ImageArrays`] per image.
pub fn split_explanation(e: &Explanation) -> Vec<ImageArrays> {
    let cf = Array::from_tensor(e.counterfactual.clone());
    let rec = Array::from_tensor(e.reconstruction.clone());
    let [b, l, s] = e.codes_shape;
    let img = cf.data.len() / b.max(1);
    let one = |a: &Array, i: usize| {
        let mut shape = a.shape.clone();
        shape[0] = 1;
        Array { shape, data: a.data[i * img..(i + 1) * img].to_vec() }
    };
    let codes = |v: &[f32], i: usize| Array { shape: vec![1, l, s], data: v[i * l * s..(i + 1) * l * s].to_vec() };
    (0..b)
        .map(|i| ImageArrays {
            counterfactual: one(&cf, i),
            reconstruction: one(&rec, i),
            z_initial: codes(&e.z_initial, i),
            z_final: codes(&e.z_final, i),
        })
        .collect()
}

/// Writes what `steex explain` writes for one image into `out` (`result.json` last) and
/// puts the folder in place. `extra` keys are added to `result.json`; returns it.
pub fn write_result(
    out: OutDir,
    models: &Models,
    query: &Array,
    labels: &LabelMap,
    arrays: &ImageArrays,
    r: &ImageResult,
    extra: serde_json::Map<String, serde_json::Value>,
) -> Result<serde_json::Value, Error> {
    let (h, w) = (query.shape[2], query.shape[3]);
    let attribute = models.settings.attribute;
    let q_img = to_rgb(&query.data, h, w);
    let rec_img = to_rgb(&arrays.reconstruction.data, h, w);
    let cf_img = to_rgb(&arrays.counterfactual.data, h, w);
    let (diff_img, max_diff) = difference_map(&arrays.counterfactual.data, &query.data, h, w);
    let name = models.attribute_name();
    let captions = vec![
        format!(
            "{name}: p = {:.3} on the query -> {:.3} on the counterfactual (target {}) {}",
            r.initial_scores[attribute],
            r.final_scores[attribute],
            r.target,
            if r.success { "FLIPPED" } else { "not flipped" }
        ),
        format!("regions: {}; steps {}; difference map white = {:.3}", models.regions_text(), r.steps_run, max_diff),
    ];
    let report = panel_row(
        &[("query", &q_img), ("reconstruction", &rec_img), ("counterfactual", &cf_img), ("|cf - query|", &diff_img)],
        &captions,
    );
    out.write("query.png", &png(&q_img))?;
    let mut mask_png = std::io::Cursor::new(Vec::new());
    image::GrayImage::from_raw(labels.width as u32, labels.height as u32, labels.labels.clone())
        .expect("size matches")
        .write_to(&mut mask_png, image::ImageFormat::Png)
        .expect("PNG encoding into memory");
    out.write("mask.png", &mask_png.into_inner())?;
    out.write("reconstruction.png", &png(&rec_img))?;
    out.write("counterfactual.png", &png(&cf_img))?;
    out.write("difference.png", &png(&diff_img))?;
    out.write("report.png", &png(&report))?;
    write_npy(&out.path("counterfactual.npy"), &arrays.counterfactual)?;
    write_npy(&out.path("z_initial.npy"), &arrays.z_initial)?;
    write_npy(&out.path("z_final.npy"), &arrays.z_final)?;
    let regions_all = &models.regions_all;
    let mut result = serde_json::json!({
        "initial_scores": r.initial_scores,
        "final_scores": r.final_scores,
        "initial_logits": r.initial_logits,
        "final_logits": r.final_logits,
        "target": r.target,
        "success": r.success,
        "loss_decision": r.loss_decision,
        "loss_proximity": r.loss_proximity,
        "steps_run": r.steps_run,
        "failure": r.failure,
        "status": if r.failure.is_some() { "failed" } else { "ok" },
        "reason": r.failure,
        "attribute": { "id": attribute, "name": name },
        "regions": models.settings.regions.as_ref().map(|v| v.iter().map(|&j| serde_json::json!({"id": j, "name": regions_all[j]})).collect::<Vec<_>>()),
        "names": models.attrs,
        "preset": models.preset_name,
        "settings": models.settings,
    });
    if let serde_json::Value::Object(m) = &mut result {
        m.extend(extra);
    }
    out.write("result.json", serde_json::to_string_pretty(&result).expect("serialisable").as_bytes())?;
    out.commit()?;
    Ok(result)
}

/// `steex explain`.
pub fn run(args: ExplainArgs, device: &Device) -> Result<(), Error> {
    let out = OutDir::create(&args.out, args.force)?;
    let device = device.clone().autodiff();
    let t0 = Instant::now();
    let models = Models::load(&args.options, &device)?;
    let attribute = models.settings.attribute;

    // Inputs at the generator's size.
    let (h, w) = models.g.config().image_size();
    let query = read_image(&args.image, (h, w))?;
    let seg = match &args.segmenter {
        Some(p) => Some((load_segmenter(p, &device)?, p.clone())),
        None => None,
    };
    let labels = query_labels(
        &models,
        &args.image,
        &query,
        args.mask.as_deref(),
        seg.as_ref().map(|((m, pr), p)| (m, pr.as_deref(), p.as_path())),
        &device,
    )?;
    let mask_path = args.mask.clone().or(args.segmenter.clone()).unwrap_or_default();
    let mask = models
        .g
        .mask(labels.to_tensor(&device))
        .map_err(|e| Error::Mask { path: mask_path.clone(), reason: e.to_string() })?;

    let settings = &models.settings;
    let bar = ProgressBar::new(settings.steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} explain [{bar:30}] step {pos}/{len} {msg} ({elapsed}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let name = models.attribute_name().to_string();
    let mut observer = |r: &steex::explain::StepReport| {
        bar.set_position(r.step as u64);
        bar.set_message(format!(
            "loss {:.4} (decision {:.4}) p({name}) {:.3}",
            r.loss_decision[0] + r.loss_proximity[0],
            r.loss_decision[0],
            r.score[0]
        ));
    };
    let e = explain(&models.g, &models.c, query.to_tensor::<4>(&device), &mask, settings, &mut observer)
        .map_err(|e| bad(e.to_string()))?;
    bar.finish_and_clear();
    let r = &e.images[0];
    let arrays = split_explanation(&e).swap_remove(0);
    let mut extra = serde_json::Map::new();
    extra.insert(
        "inputs".into(),
        serde_json::json!({
            "generator": args.options.generator, "classifier": args.options.classifier, "image": args.image,
            "mask": args.mask, "segmenter": args.segmenter,
        }),
    );
    extra.insert("seconds".into(), serde_json::json!(t0.elapsed().as_secs_f64()));
    write_result(out, &models, &query, &labels, &arrays, r, extra)?;
    eprintln!(
        "{}: p({name}) {:.3} -> {:.3} (target {}), {} in {} steps, {:.1} s",
        args.out.display(),
        r.initial_scores[attribute],
        r.final_scores[attribute],
        r.target,
        if r.success { "flipped" } else { "not flipped" },
        r.steps_run,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
