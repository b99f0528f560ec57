//! `steex segment-dir`: the published `infer_masks.py` for a folder of images, batched,
//! resumable and sharded as `explain-dir` is (the same walk, shards and output rules), the
//! masks named by image stem so that `explain-dir --masks` finds them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use steex::Error;
use steex::dataset::{ImageEntry, Shard, list_images, mask_for, prepare_out};
use steex::error::bad;
use steex::io::{
    Array, gray_png, load_segmenter, read_image, read_image_native, read_json, segment_batch, write_bytes, write_json,
};
use steex::outdir::OutputLock;

use super::segment::{Labels, parse_size};

/// The plan file: a resumed run must segment the same way.
pub const SEGMENT_PLAN_FILE: &str = "segment-plan.json";
/// The summary file.
pub const SEGMENT_SUMMARY_FILE: &str = "segment-summary.json";

/// Arguments of `steex segment-dir`.
#[derive(clap::Args, Debug)]
pub struct SegmentDirArgs {
    /// Folder of images (PNG/JPEG/`.npy`), taken in file name order as `explain-dir` takes them.
    #[arg(long)]
    pub images: PathBuf,
    /// Segmenter weights (`weights-convert deeplab`).
    #[arg(long)]
    pub segmenter: PathBuf,
    /// Output folder: one label map per image, `<stem>.png` (feed it to `explain-dir --masks`).
    #[arg(long)]
    pub out: PathBuf,
    /// Images segmented together.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Ids to write (`generator`: the ids `explain` reads).
    #[arg(long, value_enum, default_value = "generator")]
    pub labels: Labels,
    /// Resize every image (bicubic, as Pillow) to WIDTHxHEIGHT first, as `infer_masks.py`
    /// does (`256x256` CelebAMask-HQ, `512x256` BDD); default: each image at its size.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(usize, usize)>,
    /// Take only every N-th image from offset K (`K/N`), as `explain-dir --shard`.
    #[arg(long, default_value = "0/1")]
    pub shard: Shard,
    /// Continue a run in --out: images whose mask is there are skipped.
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Delete a non-empty --out and start over.
    #[arg(long)]
    pub force: bool,
    /// Print the summary on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What a run was asked (checked on `--resume`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SegmentPlan {
    segmenter: PathBuf,
    labels: String,
    size: Option<(usize, usize)>,
    shard: String,
}

/// One image that failed.
#[derive(Debug, Clone, Serialize)]
struct Failed {
    image: String,
    reason: String,
}

/// `segment-summary.json`.
#[derive(Debug, Clone, Serialize)]
struct SegmentSummary {
    n_images: usize,
    n_written: usize,
    n_skipped: usize,
    n_failed: usize,
    shard: String,
    failed: Vec<Failed>,
}

fn fail(s: &mut SegmentSummary, e: &ImageEntry, reason: String) {
    s.n_failed += 1;
    s.failed.push(Failed { image: e.path.display().to_string(), reason });
}

/// `steex segment-dir`.
pub fn run(args: SegmentDirArgs, device: &Device) -> Result<(), Error> {
    if args.batch == 0 {
        return Err(bad("--batch 0: expected at least 1".into()));
    }
    if !args.images.is_dir() {
        return Err(bad(format!("--images {}: not a folder", args.images.display())));
    }
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| bad(format!("--out {}: cannot create its parent folder: {e}", args.out.display())))?;
    }
    let _lock = OutputLock::acquire(&args.out)?;
    let all = list_images(&args.images)?;
    let (model, preset) = load_segmenter(&args.segmenter, device)?;
    prepare_out(&args.out, args.resume, args.force)?;
    let out = args.out.clone();
    let plan = SegmentPlan {
        segmenter: args.segmenter.clone(),
        labels: format!("{:?}", args.labels).to_lowercase(),
        size: args.size,
        shard: args.shard.to_string(),
    };
    let plan_path = out.join(SEGMENT_PLAN_FILE);
    if args.resume && plan_path.is_file() {
        let old: SegmentPlan = read_json(&plan_path)?;
        if old != plan {
            return Err(bad(format!(
                "--resume: {} was segmented otherwise ({old:?}), not as now ({plan:?}); use another --out or --force",
                out.display()
            )));
        }
    }
    write_json(&plan_path, &plan)?;

    let mine: Vec<ImageEntry> = args.shard.select(&all);
    let mut by_stem: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &all {
        *by_stem.entry(&e.stem).or_default() += 1;
    }
    let bar = ProgressBar::new(mine.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} segment-dir [{bar:30}] {pos}/{len} images ({elapsed}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut s = SegmentSummary {
        n_images: mine.len(),
        n_written: 0,
        n_skipped: 0,
        n_failed: 0,
        shard: args.shard.to_string(),
        failed: Vec::new(),
    };
    for chunk in mine.chunks(args.batch) {
        let mut loaded: Vec<(&ImageEntry, Array)> = Vec::new();
        for e in chunk {
            bar.inc(1);
            if mask_for(&out, &e.stem).is_file() {
                s.n_skipped += 1;
                continue;
            }
            if by_stem[e.stem.as_str()] > 1 {
                let reason = format!("several files share the stem `{}`: masks are named by stem", e.stem);
                fail(&mut s, e, reason);
                continue;
            }
            let image = match args.size {
                Some(size) => read_image(&e.path, size),
                None => read_image_native(&e.path),
            };
            match image {
                Ok(a) if a.shape[2] < 8 || a.shape[3] < 8 => {
                    fail(&mut s, e, format!("a {}x{} image is too small to segment", a.shape[3], a.shape[2]))
                }
                Ok(a) => loaded.push((e, a)),
                Err(err) => fail(&mut s, e, err.to_string()),
            }
        }
        // One forward pass per size present in the batch.
        let mut sizes: Vec<(usize, usize)> = loaded.iter().map(|(_, a)| (a.shape[2], a.shape[3])).collect();
        sizes.sort();
        sizes.dedup();
        for size in sizes {
            let group: Vec<&(&ImageEntry, Array)> =
                loaded.iter().filter(|(_, a)| (a.shape[2], a.shape[3]) == size).collect();
            let arrays: Vec<&Array> = group.iter().map(|(_, a)| a).collect();
            let maps = segment_batch(&model, preset.as_deref(), &arrays, device);
            for ((e, _), (raw, labels)) in group.iter().zip(maps) {
                let ids: Vec<u8> = match args.labels {
                    Labels::Generator => labels.labels,
                    Labels::Raw => raw.iter().map(|&k| k as u8).collect(),
                };
                write_bytes(&mask_for(&out, &e.stem), &gray_png(&ids, size.0, size.1))?;
                s.n_written += 1;
            }
        }
    }
    bar.finish_and_clear();
    write_json(&out.join(SEGMENT_SUMMARY_FILE), &s)?;
    eprintln!(
        "{}: {} images: {} segmented, {} already there, {} failed{}",
        out.display(),
        s.n_images,
        s.n_written,
        s.n_skipped,
        s.n_failed,
        s.failed.first().map(|f| format!(" (first: {}: {})", f.image, f.reason)).unwrap_or_default()
    );
    if args.json {
        super::print_stdout(&format!("{}\n", steex_io::json::to_pretty(&s)));
    }
    Ok(())
}
