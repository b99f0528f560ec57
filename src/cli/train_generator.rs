//! `steex train generator`: SEAN's GAN training on a folder of images and one of label
//! maps, with checkpoints, resume, a JSON-lines log, previews and Ctrl-C, as `steex train
//! classifier|segmenter`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use steex::Error;
use steex::train::TrainError;
use steex::train::data::segmentation_samples;
use steex::train::generator::{GanEvent, GeneratorRecipe, train_generator, write_generator};
use steex::train::run::Session;
use steex_gan::discriminator::MultiscaleDiscriminatorConfig;
use steex_gan::vgg::{Vgg19, Vgg19Config};
use steex_sean::SeanConfig;

use super::train::parse_size;

/// Arguments of `steex train generator`.
#[derive(clap::Args, Debug)]
pub struct GeneratorArgs {
    /// Folder of training images (PNG/JPEG).
    #[arg(long)]
    pub images: PathBuf,
    /// Folder of label maps: `<stem>.png` per image, 8-bit, value = label id (255: unknown,
    /// mapped to the last label as the published loader does).
    #[arg(long)]
    pub masks: PathBuf,
    /// Number of labels (`label_nc`; 19 for CelebAMask-HQ, 20 for BDD).
    #[arg(long)]
    pub labels: usize,
    /// Training size `HxW` (or `N`): the width a multiple of 32, the height width / aspect.
    #[arg(long)]
    pub size: String,
    /// The trained generator (as `weights-convert sean` writes it).
    #[arg(long)]
    pub out: PathBuf,
    /// torchvision's VGG19 (`features.<i>.*` as safetensors) for the perceptual loss.
    #[arg(long, required_unless_present = "no_vgg", conflicts_with = "no_vgg")]
    pub vgg: Option<PathBuf>,
    /// Train without the VGG loss (`no_vgg_loss`).
    #[arg(long)]
    pub no_vgg: bool,
    /// Epochs at the initial learning rate.
    #[arg(long, default_value_t = 50)]
    pub niter: usize,
    /// Epochs of linear decay to 0 after them.
    #[arg(long, default_value_t = 50)]
    pub niter_decay: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Base learning rate (the generator trains at lr / 2, the discriminator at 2 lr).
    #[arg(long, default_value_t = 0.0002)]
    pub lr: f64,
    /// Generator width (`ngf`).
    #[arg(long, default_value_t = 64)]
    pub ngf: usize,
    /// Style vector length.
    #[arg(long, default_value_t = 512)]
    pub style_length: usize,
    /// Hidden width of ACE's SPADE branch.
    #[arg(long, default_value_t = 128)]
    pub spade_hidden: usize,
    /// Base width of the style encoder.
    #[arg(long, default_value_t = 32)]
    pub encoder_ngf: usize,
    /// Discriminator width (`ndf`).
    #[arg(long, default_value_t = 64)]
    pub ndf: usize,
    /// Train without ACE's noise (default: noise drawn per step from the seed).
    #[arg(long)]
    pub no_noise: bool,
    /// Seed of the initialisation, the shuffles and the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A preview PNG (masks | real | reconstruction) every this many steps, in
    /// `<out>.previews/` (0: none).
    #[arg(long, default_value_t = 0)]
    pub preview_every: u64,
    /// Threads reading and decoding images ahead of the step.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Fail on an image that cannot be decoded mid-epoch (default: skip it, log it).
    #[arg(long)]
    pub strict: bool,
    /// Checkpoint folder (default: `<out>.ckpt`, or the `--resume` folder).
    #[arg(long)]
    pub checkpoints: Option<PathBuf>,
    /// Continue from this checkpoint folder (same recipe and data).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Append a JSON line per step and per epoch to this file.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Replace an existing `--out`.
    #[arg(long)]
    pub force: bool,
}

/// The frozen VGG19 of a torchvision `features.*` file (its width read from
/// `features.0.weight`: reduced networks of the same sequence load too).
fn load_vgg(path: &std::path::Path, device: &Device) -> Result<Vgg19, Error> {
    let w = steex::io::read_weights(path)?;
    let bad = |reason: String| Error::Argument(format!("--vgg {}: {reason}", path.display()));
    let first = w.shape("features.0.weight").ok_or_else(|| bad("no tensor `features.0.weight`".into()))?;
    let width = first.first().copied().unwrap_or(0);
    if width == 0 || 64 % width != 0 {
        return Err(bad(format!("features.0.weight has shape {first:?}, expected [64, 3, 3, 3]")));
    }
    Vgg19Config::new().with_width_divisor(64 / width).load(&w.root(), device).map_err(|e| bad(e.to_string()))
}

/// `steex train generator`.
pub fn generator(args: GeneratorArgs, device: &Device) -> Result<(), Error> {
    if args.out.exists() && !args.force && args.resume.is_none() {
        return Err(Error::Argument(format!("--out {}: exists (use --force to replace it)", args.out.display())));
    }
    if args.labels < 2 || args.labels > 255 {
        return Err(Error::Argument(format!("--labels {}: expected 2 to 255", args.labels)));
    }
    let (h, w) = parse_size(&args.size)?;
    let sean = SeanConfig::new(args.labels, w)
        .with_aspect_ratio(w as f64 / h as f64)
        .with_ngf(args.ngf)
        .with_style_length(args.style_length)
        .with_spade_hidden(args.spade_hidden)
        .with_encoder_ngf(args.encoder_ngf);
    sean.validate().map_err(|e| Error::Argument(format!("--size {}: {e}", args.size)))?;
    if sean.image_size() != (h, w) {
        let (gh, gw) = sean.image_size();
        return Err(Error::Argument(format!(
            "--size {}: SEAN makes {gh}x{gw} images at width {w} (height width / aspect, in steps of 32)",
            args.size
        )));
    }
    let recipe = GeneratorRecipe {
        sean,
        discriminator: MultiscaleDiscriminatorConfig::new(args.labels).with_ndf(args.ndf),
        niter: args.niter,
        niter_decay: args.niter_decay,
        batch: args.batch,
        lr: args.lr,
        seed: args.seed,
        workers: args.workers.max(1),
        strict: args.strict,
        noise: !args.no_noise,
        preview_every: args.preview_every,
    };
    let train = segmentation_samples(&args.images, &args.masks, args.labels)?;
    let ad = device.clone().autodiff();
    let vgg = match &args.vgg {
        Some(p) => Some(load_vgg(p, &ad)?),
        None => None,
    };
    let checkpoints = args.checkpoints.clone().or(args.resume.clone()).unwrap_or_else(|| {
        let mut p = args.out.clone().into_os_string();
        p.push(".ckpt");
        p.into()
    });
    let previews = {
        let mut p = args.out.clone().into_os_string();
        p.push(".previews");
        PathBuf::from(p)
    };
    let _lock = steex::outdir::OutputLock::acquire(&args.out)?;
    let mut log = match &args.log {
        Some(p) => {
            Some(std::fs::OpenOptions::new().create(true).append(true).open(p).map_err(|e| Error::io(p.clone(), e))?)
        }
        None => None,
    };
    let epochs = recipe.epochs();
    eprintln!(
        "training a SEAN generator ({h}x{w}, {} labels, ngf {}) on {} images; checkpoints in {}",
        args.labels,
        args.ngf,
        train.len(),
        checkpoints.display()
    );
    static STOP: AtomicBool = AtomicBool::new(false);
    static DONE: AtomicBool = AtomicBool::new(false);
    let handler = || {
        STOP.store(true, Ordering::SeqCst);
        eprintln!("\ninterrupt: writing a checkpoint after the current step ...");
        let t0 = std::time::Instant::now();
        while !DONE.load(Ordering::SeqCst) && t0.elapsed().as_secs() < 3600 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    if let Err(e) = steex::outdir::on_interrupt(handler) {
        eprintln!("warning: no Ctrl-C handler ({e}); checkpoints are still written after every epoch");
    }
    let session = Session {
        train: Arc::new(train),
        val: None,
        checkpoints: checkpoints.clone(),
        resume: args.resume.is_some(),
        stop: &STOP,
    };
    let mut bar: Option<ProgressBar> = None;
    let mut preview_error: Option<Error> = None;
    let mut on_event = |e: GanEvent| {
        let line = match &e {
            GanEvent::EpochStart { epoch, batches, first, lr } => {
                let b = ProgressBar::new(*batches as u64);
                b.set_style(
                    ProgressStyle::with_template(&format!(
                        "{{spinner}} epoch {}/{epochs} [{{bar:30}}] {{pos}}/{{len}} batches {{msg}} ({{elapsed}}, eta {{eta}})",
                        epoch + 1,
                    ))
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                b.set_position(*first as u64);
                b.reset_eta();
                b.set_message(format!("lr {lr:.2e}"));
                bar = Some(b);
                None
            }
            GanEvent::Step { epoch, batch, step, losses: l, lr, images, seconds } => {
                if let Some(b) = &bar {
                    b.set_position(*batch as u64 + 1);
                    b.set_message(format!(
                        "G {:.3} (GAN {:.3}, feat {:.3}, VGG {:.3}), D fake {:.3} real {:.3}",
                        l.gan + l.feat + l.vgg,
                        l.gan,
                        l.feat,
                        l.vgg,
                        l.d_fake,
                        l.d_real
                    ));
                }
                Some(serde_json::json!({"event": "step", "epoch": epoch + 1, "batch": batch + 1, "step": step,
                    "GAN": l.gan, "GAN_Feat": l.feat, "VGG": l.vgg, "D_Fake": l.d_fake, "D_real": l.d_real,
                    "D_fake_mean": l.d_fake_mean, "D_real_mean": l.d_real_mean, "lr": lr,
                    "images_per_s": *images as f64 / seconds.max(1e-9)}))
            }
            GanEvent::Skipped { path, reason } => {
                if let Some(b) = &bar {
                    b.println(format!("skipped {}: {reason}", path.display()));
                }
                Some(serde_json::json!({"event": "skipped", "path": path, "reason": reason}))
            }
            GanEvent::EpochEnd { epoch, means: m } => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                eprintln!(
                    "epoch {}/{epochs}: GAN {:.4}, GAN_Feat {:.4}, VGG {:.4}, D_Fake {:.4}, D_real {:.4}",
                    epoch + 1,
                    m.gan,
                    m.feat,
                    m.vgg,
                    m.d_fake,
                    m.d_real
                );
                Some(serde_json::json!({"event": "epoch", "epoch": epoch + 1, "GAN": m.gan, "GAN_Feat": m.feat,
                    "VGG": m.vgg, "D_Fake": m.d_fake, "D_real": m.d_real,
                    "D_fake_mean": m.d_fake_mean, "D_real_mean": m.d_real_mean}))
            }
            GanEvent::Checkpoint { path, epoch, batch } => {
                Some(serde_json::json!({"event": "checkpoint", "path": path, "epoch": epoch, "batch": batch}))
            }
            GanEvent::Preview { step, png } => {
                let path = previews.join(format!("step_{step:08}.png"));
                let written = std::fs::create_dir_all(&previews)
                    .map_err(|e| Error::io(previews.clone(), e))
                    .and_then(|_| steex::io::write_bytes(&path, png).map_err(Error::from));
                match written {
                    Ok(()) => Some(serde_json::json!({"event": "preview", "step": step, "path": path})),
                    Err(e) => {
                        preview_error.get_or_insert(e);
                        None
                    }
                }
            }
        };
        if let (Some(f), Some(l)) = (log.as_mut(), line) {
            let _ = writeln!(f, "{}", steex_io::json::to_line(&l));
        }
    };
    let result = train_generator(&recipe, vgg, &session, &ad, &mut on_event);
    if let Some(e) = preview_error {
        return Err(e);
    }
    match result {
        Ok(t) => {
            write_generator(&t, &recipe, &args.out)?;
            eprintln!("wrote {}", args.out.display());
            Ok(())
        }
        Err(TrainError::Interrupted(p)) => {
            DONE.store(true, Ordering::SeqCst);
            eprintln!("checkpoint in {}; continue with --resume {}", p.display(), p.display());
            std::process::exit(130);
        }
        Err(TrainError::Diverged { epoch, step, loss }) => {
            let kept = if checkpoints.join("state.json").is_file() {
                format!("the last good checkpoint is {} (--resume continues from it)", checkpoints.display())
            } else {
                "no checkpoint was written before it".to_string()
            };
            Err(Error::Argument(format!(
                "training diverged at epoch {epoch}, step {step}: a loss is {loss}; nothing of that step was saved, {kept}"
            )))
        }
        Err(e) => Err(e.into()),
    }
}
