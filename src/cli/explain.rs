//! `steex explain`: one image (the run logic is the library's [`steex::run`]).

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use steex::Error;
use steex::error::bad;
use steex::explain::explain;
use steex::io::{load_segmenter, read_image};
use steex::outdir::OutDir;
use steex::results::Inputs;
use steex::run::{ExplainOptions, Models, Resolved, query_labels, split_explanation, write_result};

/// Arguments of `steex explain`.
#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// Query image: PNG/JPEG (resized bicubic to the generator's size) or `.npy`
    /// float32 [1, 3, H, W] in [-1, 1].
    #[arg(long)]
    pub image: PathBuf,
    /// Label map of the query: 8-bit single-channel PNG of the image's aspect ratio, any size
    /// (resized nearest to the generator's size, as the published loaders do).
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

/// `steex explain`.
pub fn run(args: ExplainArgs, device: &Device) -> Result<(), Error> {
    let out = OutDir::create(&args.out, args.force)?;
    let device = device.clone().autodiff();
    let t0 = Instant::now();
    // Names, image and mask are checked against the files' headers before the models load.
    let resolved = Resolved::read(&args.options)?;
    resolved.check_inputs(&args.image, args.mask.as_deref())?;
    let models = Models::load_resolved(&args.options, resolved, &device)?;

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
    let mask = models.g.mask(labels.to_tensor(&device)).map_err(|e| Error::mask(mask_path.clone(), e.to_string()))?;

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
    let inputs = Inputs {
        generator: args.options.generator.clone(),
        classifier: args.options.classifier.clone(),
        image: Some(args.image.clone()),
        mask: args.mask.clone(),
        segmenter: args.segmenter.clone(),
    };
    let mut result = models.result_json(r, inputs);
    result.seconds = t0.elapsed().as_secs_f64();
    write_result(out, &models, &query, &labels, &arrays, result)?;
    let a = models.settings.attribute;
    eprintln!(
        "{}: p({name}) {:.3} -> {:.3} ({}), {} in {} steps, {:.1} s",
        args.out.display(),
        r.initial_probabilities[a],
        r.final_probabilities[a],
        goal_text(&models, r.target),
        if r.success { "flipped" } else { "not flipped" },
        r.steps_run,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The objective in words, for the closing line.
fn goal_text(models: &Models, target: u8) -> String {
    use steex::explain::Objective;
    let name = |i: usize| models.attrs[i].as_str();
    match &models.settings.objective {
        Objective::Attribute => format!("target {target}"),
        Objective::Attributes { targets } => {
            let t: Vec<String> = targets.iter().map(|t| format!("{}={}", name(t.output), t.target)).collect();
            format!("targets {}", t.join(","))
        }
        Objective::Class { class } => format!("toward class {}", name(*class)),
        Objective::AwayFromClass { class } => format!("away from class {}", name(*class)),
    }
}
