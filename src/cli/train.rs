//! `steex train classifier|segmenter`: the published recipes on a folder of images and a
//! label file (or a folder of masks), with checkpoints, resume, a JSON-lines log and Ctrl-C.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use steex::Error;
use steex::train::classifier::write_model;
use steex::train::data::{Sample, segmentation_samples, split_samples};
use steex::train::run::{Common, Event, Session, Task};
use steex::train::segmenter::parse_backbone;
use steex::train::{Arch, ClassifierRecipe, LabelTable, SegmenterRecipe, TrainError};

/// `steex train`.
#[derive(clap::Subcommand, Debug)]
pub enum TrainCommand {
    /// Train a decision model (DenseNet121 as published, or a ResNet): BCE on the chosen
    /// attributes, Adam, StepLR, batch norm in train mode.
    Classifier(Box<ClassifierArgs>),
    /// Train a segmenter (DeepLabV3-ResNet101 as published, or -50): cross-entropy with
    /// label 0 ignored, Adam, batch norm in train mode.
    Segmenter(Box<SegmenterArgs>),
    /// Train a SEAN generator with its style encoder (GAN: multiscale discriminator, hinge
    /// loss, feature matching, VGG19 perceptual loss; TTUR Adam; linear decay), written as
    /// `weights-convert sean` writes it, for `steex encode|generate|explain`.
    Generator(Box<super::train_generator::GeneratorArgs>),
}

/// Options every `steex train` command has.
#[derive(clap::Args, Debug)]
pub struct CommonArgs {
    /// Training size `HxW` (or `N` for NxN).
    #[arg(long)]
    pub size: String,
    /// The trained model (safetensors, as `weights-convert` writes it).
    #[arg(long)]
    pub out: PathBuf,
    /// Epochs (default: the published recipe's, 5 for a classifier, 50 for a segmenter).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per batch (default: 32 for a classifier, 8 for a segmenter).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// StepLR: epochs between learning-rate decays.
    #[arg(long, default_value_t = 10)]
    pub step_size: usize,
    /// StepLR: the decay factor (1: a constant learning rate).
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Seed of the initialisation, the shuffles and the flips.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Random horizontal flips.
    #[arg(long)]
    pub flip: bool,
    /// Threads reading and decoding images ahead of the step.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Fail on an image that cannot be decoded mid-epoch (default: skip it, log it).
    #[arg(long)]
    pub strict: bool,
    /// Checkpoint folder, replaced after every epoch (default: `<out>.ckpt`, or the
    /// `--resume` folder).
    #[arg(long)]
    pub checkpoints: Option<PathBuf>,
    /// Continue from this checkpoint folder (same recipe and data; `--epochs` may grow).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Append a JSON line per step and per epoch to this file.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Replace an existing `--out`.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `steex train classifier`.
#[derive(clap::Args, Debug)]
pub struct ClassifierArgs {
    /// Folder of training images (the names the label file gives).
    #[arg(long)]
    pub images: PathBuf,
    /// Label file: CelebA/CelebAMask-HQ attribute text, BDD-OIA action JSON, or CSV
    /// `file,attr1,...` with 0/1 (detected from the content).
    #[arg(long)]
    pub labels: PathBuf,
    /// Attributes to learn, by name (comma-separated), one output each: for example
    /// `Male,Smiling,Young` (CelebA) or `move_forward,stop,turn_left,turn_right` (BDD-OIA).
    #[arg(long, value_delimiter = ',', required = true)]
    pub attributes: Vec<String>,
    /// Architecture: densenet121, resnet18, resnet34, resnet50, resnet101, resnet152, or a
    /// reduced one (`densenet121:growth=4,blocks=2-2,init=8,bn=2`, `resnet18:width=8`).
    #[arg(long, default_value = "densenet121")]
    pub arch: String,
    /// Folder of validation images: loss and per-attribute accuracy after each epoch.
    #[arg(long)]
    pub val_images: Option<PathBuf>,
    /// Label file of the validation images (default: `--labels`, shared by both folders).
    #[arg(long)]
    pub val_labels: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Arguments of `steex train segmenter`.
#[derive(clap::Args, Debug)]
pub struct SegmenterArgs {
    /// Folder of training images (PNG/JPEG).
    #[arg(long)]
    pub images: PathBuf,
    /// Folder of label maps: `<stem>.png` per image, 8-bit, value = class id (255: ignored).
    #[arg(long)]
    pub masks: PathBuf,
    /// Number of classes.
    #[arg(long)]
    pub classes: usize,
    /// Backbone: resnet50, resnet101 (as published), or a reduced one
    /// (`resnet50:width=2,layers=1-1-1-1,head=16`).
    #[arg(long, default_value = "resnet101")]
    pub backbone: String,
    /// Count label 0 in the loss and the metrics (the published loss ignores it).
    #[arg(long)]
    pub count_background: bool,
    /// The ASPP's dropout probability in training (torchvision's DeepLabV3 head: 0.5; 0
    /// turns it off).
    #[arg(long, default_value_t = 0.5)]
    pub dropout: f64,
    /// Folder of validation images: loss, mean IoU and pixel accuracy after each epoch.
    #[arg(long, requires = "val_masks")]
    pub val_images: Option<PathBuf>,
    /// Folder of the validation label maps.
    #[arg(long, requires = "val_images")]
    pub val_masks: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `steex train ...`.
pub fn run(cmd: TrainCommand, device: &Device) -> Result<(), Error> {
    match cmd {
        TrainCommand::Classifier(a) => classifier(*a, device),
        TrainCommand::Segmenter(a) => segmenter(*a, device),
        TrainCommand::Generator(a) => super::train_generator::generator(*a, device),
    }
}

/// `HxW` or `N`.
pub fn parse_size(s: &str) -> Result<(usize, usize), Error> {
    let bad = || Error::Argument(format!("--size {s}: expected HxW (for example 256x512) or N"));
    let (h, w) = s.split_once(['x', 'X']).unwrap_or((s, s));
    let h: usize = h.trim().parse().map_err(|_| bad())?;
    let w: usize = w.trim().parse().map_err(|_| bad())?;
    if h < 8 || w < 8 {
        return Err(bad());
    }
    Ok((h, w))
}

/// The shared settings from the arguments, with the command's default epochs and batch.
fn common(a: &CommonArgs, epochs: usize, batch: usize, gamma: f64) -> Result<Common, Error> {
    if a.out.exists() && !a.force && a.resume.is_none() {
        return Err(Error::Argument(format!("--out {}: exists (use --force to replace it)", a.out.display())));
    }
    Ok(Common {
        epochs: a.epochs.unwrap_or(epochs),
        batch: a.batch.unwrap_or(batch),
        lr: a.lr,
        step_size: a.step_size,
        gamma: a.gamma.unwrap_or(gamma),
        seed: a.seed,
        flip: a.flip,
        workers: a.workers.max(1),
        strict: a.strict,
        size: parse_size(&a.size)?,
    })
}

fn classifier(args: ClassifierArgs, device: &Device) -> Result<(), Error> {
    let arch: Arch = args.arch.parse().map_err(Error::Argument)?;
    let common = common(&args.common, 5, 32, 0.5)?;
    // Everything the run needs is checked before the first step.
    let table = LabelTable::read(&args.labels)?;
    let columns = table.select(&args.attributes)?;
    let names: Vec<String> = columns.iter().map(|&c| table.names[c].clone()).collect();
    let (train, val) = match (&args.val_images, &args.val_labels) {
        (None, None) => (split_samples(&[&args.images], &table, &columns)?.remove(0), None),
        (None, Some(_)) => return Err(Error::Argument("--val-labels needs --val-images".into())),
        (Some(v), None) => {
            let mut s = split_samples(&[&args.images, v], &table, &columns)?;
            let val = s.pop();
            (s.remove(0), val)
        }
        (Some(v), Some(l)) => {
            let vt = LabelTable::read(l)?;
            let vc = vt.select(&names)?;
            (split_samples(&[&args.images], &table, &columns)?.remove(0), split_samples(&[v], &vt, &vc)?.pop())
        }
    };
    let what = format!("{} for {}", args.arch, names.join(", "));
    let recipe = ClassifierRecipe { arch, names, common };
    run_task(&recipe, &args.common, train, val, &what, device)
}

fn segmenter(args: SegmenterArgs, device: &Device) -> Result<(), Error> {
    if args.classes < 2 || args.classes > 255 {
        return Err(Error::Argument(format!("--classes {}: expected 2 to 255", args.classes)));
    }
    let config = parse_backbone(&args.backbone, args.classes).map_err(Error::Argument)?;
    let common = common(&args.common, 50, 8, 1.0)?;
    let train_set = segmentation_samples(&args.images, &args.masks, args.classes)?;
    let val = match (&args.val_images, &args.val_masks) {
        (Some(i), Some(m)) => Some(segmentation_samples(i, m, args.classes)?),
        _ => None,
    };
    let what = format!("DeepLabV3 ({}) for {} classes", args.backbone, args.classes);
    if !(0.0..1.0).contains(&args.dropout) {
        return Err(Error::Argument(format!("--dropout {}: expected a probability in [0, 1)", args.dropout)));
    }
    let recipe = SegmenterRecipe { config, count_background: args.count_background, dropout: args.dropout, common };
    run_task(&recipe, &args.common, train_set, val, &what, device)
}

/// Runs a task: the lock on `--out`, the log, the progress bar, Ctrl-C, the output file.
fn run_task(
    task: &dyn Task,
    args: &CommonArgs,
    train: Vec<Sample>,
    val: Option<Vec<Sample>>,
    what: &str,
    device: &Device,
) -> Result<(), Error> {
    let device = device.clone().autodiff();
    let epochs = task.common().epochs;
    let checkpoints = args.checkpoints.clone().or(args.resume.clone()).unwrap_or_else(|| {
        let mut p = args.out.clone().into_os_string();
        p.push(".ckpt");
        p.into()
    });
    let _lock = steex::outdir::OutputLock::acquire(&args.out)?;
    let mut log = match &args.log {
        Some(p) => {
            Some(std::fs::OpenOptions::new().create(true).append(true).open(p).map_err(|e| Error::io(p.clone(), e))?)
        }
        None => None,
    };
    eprintln!(
        "training {what} on {} images ({} validation); checkpoints in {}",
        train.len(),
        val.as_ref().map_or(0, |v| v.len()),
        checkpoints.display()
    );

    // Ctrl-C: the loop writes a checkpoint after the current step and stops; the handler
    // waits for it, then exits with 130.
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
        val: val.map(Arc::new),
        checkpoints: checkpoints.clone(),
        resume: args.resume.is_some(),
        stop: &STOP,
    };
    let mut bar: Option<ProgressBar> = None;
    let mut rate = (0usize, 0f64);
    let mut on_event = |e: Event| {
        let line = match &e {
            Event::EpochStart { epoch, batches, first, lr } => {
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
                rate = (0, 0.0);
                None
            }
            Event::Step { epoch, batch, step, loss, lr, images, seconds } => {
                rate = (rate.0 + images, rate.1 + seconds);
                let ips = rate.0 as f64 / rate.1.max(1e-9);
                if let Some(b) = &bar {
                    b.set_position(*batch as u64 + 1);
                    b.set_message(format!("loss {loss:.4}, {ips:.1} images/s"));
                }
                Some(serde_json::json!({"event": "step", "epoch": epoch + 1, "batch": batch + 1, "step": step,
                    "loss": loss, "lr": lr, "images_per_s": *images as f64 / seconds.max(1e-9) }))
            }
            Event::Skipped { path, reason } => {
                if let Some(b) = &bar {
                    b.println(format!("skipped {}: {reason}", path.display()));
                }
                Some(serde_json::json!({"event": "skipped", "path": path, "reason": reason}))
            }
            Event::EpochEnd { epoch, loss, validation } => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                let mut v = serde_json::json!({"event": "epoch", "epoch": epoch + 1, "train_loss": loss});
                let mut text = format!("epoch {}/{epochs}: train loss {loss:.4}", epoch + 1);
                if let Some(val) = validation {
                    let m: serde_json::Map<String, serde_json::Value> =
                        val.metrics.iter().map(|(n, a)| (n.clone(), serde_json::json!(a))).collect();
                    v["val_loss"] = serde_json::json!(val.loss);
                    v["val"] = serde_json::Value::Object(m);
                    let shown: Vec<String> = val.metrics.iter().map(|(n, a)| format!("{n} {a:.3}")).collect();
                    text += &format!(", validation loss {:.4}, {}", val.loss, shown.join(", "));
                }
                eprintln!("{text}");
                Some(v)
            }
            Event::Checkpoint { path, epoch, batch } => {
                Some(serde_json::json!({"event": "checkpoint", "path": path, "epoch": epoch, "batch": batch}))
            }
        };
        if let (Some(f), Some(l)) = (log.as_mut(), line) {
            let _ = writeln!(f, "{}", steex_io::json::to_line(&l));
        }
    };
    match steex::train::run::train(task, &session, &device, &mut on_event) {
        Ok(params) => {
            write_model(&params, &args.out)?;
            eprintln!("wrote {}", args.out.display());
            Ok(())
        }
        Err(TrainError::Interrupted(p)) => {
            DONE.store(true, Ordering::SeqCst);
            eprintln!("checkpoint in {}; continue with --resume {}", p.display(), p.display());
            std::process::exit(130);
        }
        Err(e) => Err(e.into()),
    }
}
