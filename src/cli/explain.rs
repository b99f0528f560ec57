//! `steex explain`.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use steex::Error;
use steex::classifier::DecisionModel;
use steex::explain::presets::{Preset, attribute_names, region_names, resolve};
use steex::explain::{AdamConfig, ExplainSettings, explain};
use steex::io::{
    Array, LabelMap, load_classifier, load_generator, load_segmenter, read_image, read_weights, segment_to_labels,
    write_npy,
};
use steex::outdir::OutDir;
use steex::render::{difference_map, panel_row, png, to_rgb};
use steex::sean::NoiseMode;

/// Arguments of `steex explain`.
#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// Generator weights (`weights-convert sean`).
    #[arg(long)]
    pub generator: PathBuf,
    /// Decision model weights (`weights-convert densenet|resnet`).
    #[arg(long)]
    pub classifier: PathBuf,
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
    /// Result folder (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace a non-empty result folder.
    #[arg(long)]
    pub force: bool,
}

fn bad(m: String) -> Error {
    Error::Argument(m)
}

/// `steex explain`.
pub fn run(args: ExplainArgs, device: &Device) -> Result<(), Error> {
    let out = OutDir::create(&args.out, args.force)?;
    let device = device.clone().autodiff();
    let t0 = Instant::now();

    // Models and names.
    let gw = read_weights(&args.generator)?;
    let cw = read_weights(&args.classifier)?;
    let preset_name =
        args.preset.clone().or_else(|| gw.meta::<String>("preset").ok()).or_else(|| cw.meta::<String>("preset").ok());
    let preset = match &preset_name {
        Some(p) => {
            Some(Preset::by_name(p).ok_or_else(|| bad(format!("--preset {p}: expected celeba, celebamhq or bdd")))?)
        }
        None => None,
    };
    drop((gw, cw));
    let g = load_generator(&args.generator, &device)?;
    let c = load_classifier(&args.classifier, &device)?;
    let l = g.config().labels;
    let k = c.num_outputs();
    let regions_all = region_names(l, preset);
    let attrs = attribute_names(k, preset);
    let attribute = match &args.attribute {
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
    let regions = if !args.regions.is_empty() {
        Some(resolve(&args.regions, &regions_all, "region").map_err(|e| bad(format!("--regions: {e}")))?)
    } else if !args.region_ids.is_empty() {
        let ids: Vec<String> = args.region_ids.iter().map(|i| i.to_string()).collect();
        Some(resolve(&ids, &regions_all, "region").map_err(|e| bad(format!("--region-ids: {e}")))?)
    } else {
        None
    };

    // Inputs at the generator's size.
    let (h, w) = g.config().image_size();
    let query = read_image(&args.image, (h, w))?;
    let (labels, mask_path) = match (&args.mask, &args.segmenter) {
        (Some(mask_path), _) => {
            let raw = LabelMap::read(mask_path)?;
            raw.check(l, mask_path)?;
            let (ih, iw) = steex::io::image_size(&args.image)?;
            if (ih, iw) != (raw.height, raw.width) {
                return Err(bad(format!(
                    "--mask {} is {}x{} but --image {} is {iw}x{ih} (W x H): they must be the same size",
                    mask_path.display(),
                    raw.width,
                    raw.height,
                    args.image.display()
                )));
            }
            (raw.resized(h, w), mask_path.clone())
        }
        (None, Some(seg)) => {
            let (model, seg_preset) = load_segmenter(seg, &device)?;
            let (labels, _, _) = segment_to_labels(&model, seg_preset.as_deref(), &query, &device);
            labels.check(l, seg).map_err(|_| {
                bad(format!(
                    "--segmenter {}: its {} classes do not map onto the generator's {l} labels",
                    seg.display(),
                    model.config().classes
                ))
            })?;
            (labels, seg.clone())
        }
        (None, None) => return Err(bad("give --mask or --segmenter".into())),
    };
    let mask = g
        .mask(labels.to_tensor(&device))
        .map_err(|e| Error::Mask { path: mask_path.clone(), reason: e.to_string() })?;

    let settings = ExplainSettings {
        attribute,
        steps: args.steps,
        adam: AdamConfig { lr: args.lr, ..Default::default() },
        lambda_prox: args.lambda_prox,
        noise: args.noise,
        early_stop: args.early_stop,
        target: args.target,
        regions: regions.clone(),
    };
    let bar = ProgressBar::new(args.steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} explain [{bar:30}] step {pos}/{len} {msg} ({elapsed}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut observer = |r: &steex::explain::StepReport| {
        bar.set_position(r.step as u64);
        bar.set_message(format!(
            "loss {:.4} (decision {:.4}) p({}) {:.3}",
            r.loss_decision[0] + r.loss_proximity[0],
            r.loss_decision[0],
            attrs[attribute],
            r.score[0]
        ));
    };
    let e = explain(&g, &c, query.to_tensor::<4>(&device), &mask, &settings, &mut observer)
        .map_err(|e| bad(e.to_string()))?;
    bar.finish_and_clear();
    let r = &e.images[0];

    // Pictures.
    let cf = Array::from_tensor(e.counterfactual.clone());
    let rec = Array::from_tensor(e.reconstruction.clone());
    let q_img = to_rgb(&query.data, h, w);
    let rec_img = to_rgb(&rec.data, h, w);
    let cf_img = to_rgb(&cf.data, h, w);
    let (diff_img, max_diff) = difference_map(&cf.data, &query.data, h, w);
    let name = &attrs[attribute];
    let captions = vec![
        format!(
            "{name}: p = {:.3} on the query -> {:.3} on the counterfactual (target {}) {}",
            r.initial_scores[attribute],
            r.final_scores[attribute],
            r.target,
            if r.success { "FLIPPED" } else { "not flipped" }
        ),
        format!(
            "regions: {}; steps {}; difference map white = {:.3}",
            regions.as_ref().map_or("all".to_string(), |v| v
                .iter()
                .map(|&j| regions_all[j].clone())
                .collect::<Vec<_>>()
                .join(",")),
            r.steps_run,
            max_diff
        ),
    ];
    let report = panel_row(
        &[("query", &q_img), ("reconstruction", &rec_img), ("counterfactual", &cf_img), ("|cf - query|", &diff_img)],
        &captions,
    );
    out.write("query.png", &png(&q_img))?;
    let mut mask_png = std::io::Cursor::new(Vec::new());
    image::GrayImage::from_raw(w as u32, h as u32, labels.labels.clone())
        .expect("size matches")
        .write_to(&mut mask_png, image::ImageFormat::Png)
        .expect("PNG encoding into memory");
    out.write("mask.png", &mask_png.into_inner())?;
    out.write("reconstruction.png", &png(&rec_img))?;
    out.write("counterfactual.png", &png(&cf_img))?;
    out.write("difference.png", &png(&diff_img))?;
    out.write("report.png", &png(&report))?;
    write_npy(&out.path("counterfactual.npy"), &cf)?;
    let shape = e.codes_shape.to_vec();
    write_npy(&out.path("z_initial.npy"), &Array { shape: shape.clone(), data: e.z_initial.clone() })?;
    write_npy(&out.path("z_final.npy"), &Array { shape, data: e.z_final.clone() })?;
    let result = serde_json::json!({
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
        "attribute": { "id": attribute, "name": name },
        "regions": regions.as_ref().map(|v| v.iter().map(|&j| serde_json::json!({"id": j, "name": regions_all[j]})).collect::<Vec<_>>()),
        "names": attrs,
        "preset": preset_name,
        "settings": settings,
        "inputs": {
            "generator": args.generator, "classifier": args.classifier, "image": args.image,
            "mask": args.mask, "segmenter": args.segmenter,
        },
        "seconds": t0.elapsed().as_secs_f64(),
    });
    out.write("result.json", serde_json::to_string_pretty(&result).expect("serialisable").as_bytes())?;
    out.commit()?;
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
