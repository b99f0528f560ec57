//! Trains the synthetic world's three tiny models in burn and writes them to `--out`
//! (default `synthetic-models/`; the demo's bundled copies in `assets/synthetic/` are
//! replaced only when that folder is named explicitly):
//!
//! ```sh
//! cargo run --release --example train_synthetic            # all three into synthetic-models/
//! cargo run --release --example train_synthetic -- --quick # a few steps each (smoke run)
//! cargo run --release --example train_synthetic -- --out assets/synthetic  # the bundled models
//! cargo run --release --example train_synthetic -- --out DIR --only generator
//! cargo run --release --example train_synthetic -- --out DIR --classifier-steps 400
//! # the generator's GAN stage, on the bundled generator (no training from scratch):
//! cargo run --release --example train_synthetic -- --out DIR --only generator \
//!     --init-generator assets/synthetic/generator.safetensors --gan
//! steex demo --models DIR                                   # the demo on those models
//! ```
//!
//! The SEAN encoder-generator learns to reconstruct scenes (and to render swapped and
//! perturbed codes in place), then the decision model learns the rule (on real scenes and
//! the generator's outputs, robust to the non-causal regions), then the segmenter learns the
//! label maps (`steex_synth::train::Recipe::bundled` has the settings). Each prints its
//! held-out figures.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;
use std::time::Instant;

use burn::tensor::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use steex::classifier::resnet::ResNet;
use steex::synth::params::TrainParams;
use steex::synth::scene::HELD_OUT_SEED;
use steex::synth::train::{self, GanProgress, GanStage, Progress, Recipe, TrainConfig};
use steex::synth::world;
use steex::weights_convert::checkpoint::TensorData;
use steex::weights_convert::output::write_safetensors;

fn bar(name: &str, steps: usize) -> ProgressBar {
    let pb = ProgressBar::new(steps as u64);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg} ({elapsed} < {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    pb.set_prefix(name.to_string());
    pb
}

/// Named tensors (shape, values) and a file's metadata.
type Values = (BTreeMap<String, (Vec<usize>, Vec<f32>)>, BTreeMap<String, String>);

fn values(params: &TrainParams) -> Values {
    (params.export(), params.metadata().clone())
}

fn save((values, meta): &Values, path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let tensors: BTreeMap<String, TensorData> =
        values.iter().map(|(k, (shape, v))| (k.clone(), TensorData::from_f32(shape.clone(), v))).collect();
    write_safetensors(path, &tensors, meta)?;
    eprintln!("wrote {} ({} tensors)", path.display(), values.len());
    Ok(())
}

/// The GAN stage with a bar, and its terms every 25 steps.
fn run_gan(stage: &GanStage, init: Values, device: &Device) -> Result<TrainParams, Box<dyn std::error::Error>> {
    let pb = bar("gan", stage.train.steps);
    let t = Instant::now();
    let mut ema = [0f32; 5];
    let p = train::finetune_generator(init, stage, device, &mut |p: Progress, g: GanProgress| {
        let terms = [g.pixel, g.gan, g.feat, g.d_fake, g.d_real];
        for (e, v) in ema.iter_mut().zip(terms) {
            *e = if p.step == 1 { v } else { 0.9 * *e + 0.1 * v };
        }
        let [pixel, gan, feat, d_fake, d_real] = ema;
        let msg = format!("pixel {pixel:.4} G {gan:.3} feat {feat:.3} D fake {d_fake:.3} real {d_real:.3}");
        pb.set_position(p.step as u64);
        pb.set_message(msg.clone());
        if pb.is_hidden() && (p.step.is_multiple_of(25) || p.step == p.steps) {
            eprintln!("gan: step {}/{} {msg}", p.step, p.steps);
        }
    })?;
    pb.finish();
    let c = stage.train;
    eprintln!("gan: {} steps x {} scenes in {:.1} s", c.steps, c.batch, t.elapsed().as_secs_f64());
    Ok(p)
}

fn run(
    name: &str,
    cfg: TrainConfig,
    f: impl FnOnce(&TrainConfig, &mut dyn FnMut(Progress)) -> Result<TrainParams, train::TrainError>,
) -> Result<TrainParams, Box<dyn std::error::Error>> {
    let pb = bar(name, cfg.steps);
    let t = Instant::now();
    let mut ema = None::<f32>;
    let p = f(&cfg, &mut |p: Progress| {
        let e = ema.map_or(p.loss, |e| 0.95 * e + 0.05 * p.loss);
        ema = Some(e);
        pb.set_position(p.step as u64);
        pb.set_message(format!("loss {e:.4}"));
        if pb.is_hidden() && (p.step.is_multiple_of(100) || p.step == p.steps) {
            eprintln!("{name}: step {}/{} loss {e:.4}", p.step, p.steps);
        }
    })?;
    pb.finish();
    eprintln!("{name}: {} steps x {} scenes in {:.1} s", cfg.steps, cfg.batch, t.elapsed().as_secs_f64());
    Ok(p)
}

/// Trains the synthetic world's generator, decision model and segmenter.
#[derive(Parser, Debug)]
#[command(name = "train_synthetic", about = "Trains the synthetic world's three tiny models")]
struct Args {
    /// Folder to write `generator.safetensors`, `classifier.safetensors` and
    /// `segmenter.safetensors` to (`assets/synthetic` replaces the demo's bundled models).
    #[arg(long, default_value = "synthetic-models")]
    out: PathBuf,
    /// A few steps per model (a smoke run; the models are not usable).
    #[arg(long)]
    quick: bool,
    /// Train only this model (the classifier reads the generator already in --out).
    #[arg(long, value_parser = ["generator", "classifier", "segmenter"])]
    only: Option<String>,
    /// Generator steps (default: the bundled recipe's).
    #[arg(long)]
    generator_steps: Option<usize>,
    /// Decision model steps (default: the bundled recipe's).
    #[arg(long)]
    classifier_steps: Option<usize>,
    /// Segmenter steps (default: the bundled recipe's).
    #[arg(long)]
    segmenter_steps: Option<usize>,
    /// Start from this generator file instead of training one from scratch (e.g.
    /// `assets/synthetic/generator.safetensors`; with --gan: fine-tune it).
    #[arg(long)]
    init_generator: Option<PathBuf>,
    /// Add the GAN stage after the generator's training (or on --init-generator): the
    /// published SEAN discriminator, hinge loss and feature matching on top of the pixel
    /// loss, TTUR Adam (`steex_synth::train::GanStage`; no VGG loss).
    #[arg(long)]
    gan: bool,
    /// GAN stage steps.
    #[arg(long, default_value_t = GanStage::default().train.steps)]
    gan_steps: usize,
    /// GAN stage base learning rate (generator lr / 2, discriminator 2 lr).
    #[arg(long, default_value_t = GanStage::default().train.lr)]
    gan_lr: f64,
    /// Weight of the adversarial terms (hinge + feature matching) against the pixel loss.
    #[arg(long, default_value_t = GanStage::default().gan_weight)]
    gan_weight: f64,
    /// Feature matching's weight inside the adversarial terms (published: 10).
    #[arg(long, default_value_t = GanStage::default().lambda_feat)]
    lambda_feat: f64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (out, only) = (args.out, args.only);
    let mut recipe = Recipe::bundled();
    for (steps, cfg) in [
        (args.generator_steps, &mut recipe.generator),
        (args.classifier_steps, &mut recipe.classifier),
        (args.segmenter_steps, &mut recipe.segmenter),
    ] {
        if args.quick {
            cfg.steps = 3;
        }
        if let Some(n) = steps {
            cfg.steps = n;
        }
    }
    std::fs::create_dir_all(&out)?;
    let device = Device::flex().autodiff();
    let wants = |m: &str| only.as_deref().is_none_or(|o| o == m);
    let t0 = Instant::now();

    let generator_path = out.join("generator.safetensors");
    if wants("generator") {
        let mut v = match &args.init_generator {
            Some(path) => train::generator_values(std::fs::read(path)?)?,
            None => values(&run("generator", recipe.generator, |c, f| train::train_generator(c, &device, f))?),
        };
        if args.gan {
            let mut stage =
                GanStage { gan_weight: args.gan_weight, lambda_feat: args.lambda_feat, ..GanStage::default() };
            stage.train.steps = if args.quick { 3 } else { args.gan_steps };
            stage.train.lr = args.gan_lr;
            v = values(&run_gan(&stage, v, &device)?);
        }
        save(&v, &generator_path)?;
    }
    // The classifier trains on real scenes and the saved generator's outputs.
    let g =
        steex::io::load_generator(&generator_path, &device).ok().map(|g| g.with_path(steex::sean::ForwardPath::Plain));
    if let Some(g) = &g {
        let b = train::batch(&(0..32).map(|i| HELD_OUT_SEED + i).collect::<Vec<_>>(), &device);
        let rec = train::reconstruct(g, b.images.clone(), b.labels)?;
        let mae: Tensor<1> = (rec - b.images).abs().mean();
        eprintln!(
            "generator: held-out reconstruction mean |error| {:.4} (images in [-1, 1])",
            mae.into_scalar::<f32>()
        );
    }
    if wants("classifier") {
        if g.is_none() {
            eprintln!("classifier: no generator at {}: training on real scenes only", generator_path.display());
        }
        let aug = recipe.augment;
        let p = run("classifier", recipe.classifier, |c, f| {
            train::train_classifier(c, g.as_ref().map(|g| (g, aug)), &device, f)
        })?;
        save(&values(&p), &out.join("classifier.safetensors"))?;
        // Held-out accuracy against the rule, on real scenes and on reconstructions.
        let c = ResNet::load(&p.weights()?, world::classifier_config(), 1, &device)?;
        let n = 400;
        let (real, rec) = train::held_out_accuracy(&c, g.as_ref(), n, &device)?;
        eprintln!(
            "classifier: held-out accuracy {real:.4} on {n} real scenes{}",
            rec.map(|r| format!(", {r:.4} on their reconstructions")).unwrap_or_default()
        );
    }
    if wants("segmenter") {
        let p = run("segmenter", recipe.segmenter, |c, f| train::train_segmenter(c, &device, f))?;
        save(&values(&p), &out.join("segmenter.safetensors"))?;
    }
    eprintln!("total {:.1} min", t0.elapsed().as_secs_f64() / 60.0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_to_a_new_folder_by_default_and_refuses_unknown_flags() {
        let a = Args::try_parse_from(["train_synthetic", "--quick"]).unwrap();
        assert_eq!(a.out, PathBuf::from("synthetic-models"));
        assert!(a.quick);
        let a = Args::try_parse_from(["train_synthetic", "--out", "assets/synthetic"]).unwrap();
        assert_eq!(a.out, PathBuf::from("assets/synthetic"));
        let e = Args::try_parse_from(["train_synthetic", "--qiuck"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
        assert!(Args::try_parse_from(["train_synthetic", "--only", "decoder"]).is_err());
        assert!(Args::try_parse_from(["train_synthetic", "--generator-steps", "many"]).is_err());
        let a = Args::try_parse_from(["train_synthetic", "--gan", "--init-generator", "g.safetensors"]).unwrap();
        assert!(a.gan && a.init_generator == Some(PathBuf::from("g.safetensors")));
        assert_eq!((a.gan_steps, a.gan_weight), (GanStage::default().train.steps, GanStage::default().gan_weight));
        assert!(!Args::try_parse_from(["train_synthetic"]).unwrap().gan);
    }
}
