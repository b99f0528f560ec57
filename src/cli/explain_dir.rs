//! `steex explain-dir`: a folder of images, batched, resumable and sharded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::tensor::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use steex::Error;
use steex::dataset::{
    ImageEntry, ResultsWriter, Shard, is_complete, latest_by_stem, list_images, mask_for, prepare_out, read_results,
    write_results,
};
use steex::error::bad;
use steex::explain::explain;
use steex::io::{Array, LabelMap, load_segmenter, read_image, read_json, write_json};
use steex::outdir::{OutDir, OutputLock};
use steex::results::{
    BatchInfo, Inputs, PLAN_FILE, Plan, PlanMismatch, PlanSettings, RESULT_FILE, RESULTS_FILE, ResultJson, ResultLine,
    SUMMARY_FILE, Status, Summary, summarize,
};
use steex::run::{ExplainOptions, Models, query_labels, split_explanation, write_result};

/// Arguments of `steex explain-dir`.
#[derive(clap::Args, Debug)]
pub struct ExplainDirArgs {
    /// Folder of query images (PNG/JPEG/`.npy`, as `steex explain --image`), taken in file
    /// name order; subfolders and hidden files are skipped.
    #[arg(long)]
    pub images: PathBuf,
    /// Folder of label maps, paired by file stem: the mask of `face1.jpg` is `face1.png`.
    #[arg(long, required_unless_present = "segmenter", conflicts_with = "segmenter")]
    pub masks: Option<PathBuf>,
    /// Segment every image with this segmenter (`weights-convert deeplab`) instead of --masks.
    #[arg(long)]
    pub segmenter: Option<PathBuf>,
    #[command(flatten)]
    pub options: ExplainOptions,
    /// Output folder: one result folder per image (named by its stem), `results.jsonl`,
    /// `summary.json` and `plan.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Images optimised together (each as if alone).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Take only every N-th image from offset K (`K/N`, K from 0 to N-1), to split a folder
    /// over N processes or machines with no coordination; merge with `steex merge`.
    #[arg(long, default_value = "0/1")]
    pub shard: Shard,
    /// Continue a run in --out: images whose result is complete are skipped, the others
    /// (failed, unfinished) are done again.
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Delete a non-empty --out and start over.
    #[arg(long)]
    pub force: bool,
}

/// The end of a run (finished or interrupted): `results.jsonl` rewritten with one line per
/// image of this run, in stem order, and the summary of those lines in `summary.json`.
fn write_summary(out: &Path, stems: &BTreeSet<String>, shard: Shard, interrupted: bool) -> Result<Summary, Error> {
    let path = out.join(RESULTS_FILE);
    let mut latest = latest_by_stem(&read_results(&path)?);
    latest.retain(|k, _| stems.contains(k));
    write_results(&path, latest.values())?;
    let mut s = summarize(stems.len(), latest.values());
    s.interrupted = interrupted;
    s.shard = Some(shard.to_string());
    write_json(&out.join(SUMMARY_FILE), &s)?;
    Ok(s)
}

fn summary_text(s: &Summary) -> String {
    format!(
        "{} images: {} explained ({} flipped, success rate {:.1}%), {} failed, {} not done; {}",
        s.n_images,
        s.n_ok,
        s.n_success,
        100.0 * s.success_rate,
        s.n_failed,
        s.n_pending,
        s.seconds_per_image.map_or("-".to_string(), |t| format!("{t:.1} s per image"))
    ) + &most_changed(s)
}

/// "; most changed: lamp 81%, sky 9%" (the three regions with the largest mean share of
/// the pixel change over the successes), or nothing when no region change was recorded.
fn most_changed(s: &Summary) -> String {
    let mut r: Vec<_> = s.region_share.iter().filter(|r| r.mean_share > 0.0).collect();
    if r.is_empty() {
        return String::new();
    }
    r.sort_by(|a, b| b.mean_share.total_cmp(&a.mean_share));
    let parts: Vec<String> = r.iter().take(3).map(|r| format!("{} {:.0}%", r.name, 100.0 * r.mean_share)).collect();
    format!("; most changed: {}", parts.join(", "))
}

/// Running counts for the progress bar.
#[derive(Default)]
struct Tally {
    ok: usize,
    failed: usize,
    success: usize,
}

impl Tally {
    fn add(&mut self, l: &ResultLine) {
        match l.status {
            Status::Ok => {
                self.ok += 1;
                self.success += l.success.unwrap_or(false) as usize;
            }
            Status::Failed => self.failed += 1,
        }
    }

    fn text(&self) -> String {
        let rate =
            if self.ok > 0 { format!("{:.0}%", 100.0 * self.success as f64 / self.ok as f64) } else { "-".into() };
        format!("ok {} failed {} flipped {rate}", self.ok, self.failed)
    }
}

/// `steex explain-dir`.
pub fn run(args: ExplainDirArgs, device: &Device) -> Result<(), Error> {
    if args.batch == 0 {
        return Err(bad("--batch 0: expected at least 1".into()));
    }
    if !args.images.is_dir() {
        return Err(bad(format!("--images {}: not a folder", args.images.display())));
    }
    if let Some(m) = &args.masks
        && !m.is_dir()
    {
        return Err(bad(format!("--masks {}: not a folder", m.display())));
    }
    // One writer per output folder: a second run stops here, having changed nothing.
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| bad(format!("--out {}: cannot create its parent folder: {e}", args.out.display())))?;
    }
    let lock = OutputLock::acquire(&args.out)?;
    let all = list_images(&args.images)?;
    // The folders, names and settings are checked before the models load (each image is
    // checked, and recorded as failed if bad, when its turn comes).
    if let Some(m) = args.masks.as_ref().filter(|m| !m.is_dir()) {
        return Err(bad(format!("--masks {}: not a folder (expected one label map per image, by stem)", m.display())));
    }
    let device = device.clone().autodiff();
    let models = Models::load(&args.options, &device)?;
    let seg = match &args.segmenter {
        Some(p) => Some((load_segmenter(p, &device)?, p.clone())),
        None => None,
    };
    // Only once the inputs are known good is --out touched (--force deletes it).
    prepare_out(&args.out, args.resume, args.force)?;
    let out = args.out.clone();
    let seg_ref = seg.as_ref().map(|((m, pr), p)| (m, pr.as_deref(), p.as_path()));
    let (h, w) = models.g.config().image_size();

    // This shard's images; stems shared by several files cannot name their results.
    let mine: Vec<ImageEntry> = args.shard.select(&all);
    let mut by_stem: BTreeMap<&str, Vec<&Path>> = BTreeMap::new();
    for e in &all {
        by_stem.entry(&e.stem).or_default().push(&e.path);
    }
    let stems: BTreeSet<String> = mine.iter().map(|e| e.stem.clone()).collect();

    // The plan: a resumed run must have the same settings and shard.
    let settings = PlanSettings { explain: &models.settings, attribute: models.attribute_name() }.to_value();
    let plan = Plan { shard: args.shard, n_total: all.len(), images: stems.iter().cloned().collect(), settings };
    let plan_path = out.join(PLAN_FILE);
    if args.resume && plan_path.is_file() {
        let old: Plan = read_json(&plan_path)?;
        match old.compatible(&plan, true) {
            Ok(()) => {}
            Err(PlanMismatch::Shard | PlanMismatch::Split) => {
                return Err(bad(format!(
                    "--resume: {} ran shard {}, not {}; give --shard {}",
                    out.display(),
                    old.shard,
                    plan.shard,
                    old.shard
                )));
            }
            Err(PlanMismatch::Settings) => {
                return Err(bad(format!(
                    "--resume: {} ran with other settings ({}), not these ({}); use another --out or --force",
                    out.display(),
                    old.settings,
                    plan.settings
                )));
            }
        }
    }
    write_json(&plan_path, &plan)?;
    steex_io::atomic::remove_stale_temporaries(&out, steex_io::atomic::Stale::All);

    // One line per image: `results.jsonl` starts again from the complete results (their
    // lines rebuilt from their result.json, so a line a kill lost comes back), and every
    // other image gets its one line when it is done again.
    let results_path = out.join(RESULTS_FILE);
    let mut tally = Tally::default();
    let mut kept = Vec::new();
    for stem in stems.iter().filter(|s| is_complete(&out, s)) {
        let r: ResultJson = read_json(&out.join(stem).join(RESULT_FILE))?;
        let line = ResultLine::from_result(stem, &r);
        tally.add(&line);
        kept.push(line);
    }
    let done = kept.len();
    write_results(&results_path, &kept)?;
    let mut writer = ResultsWriter::open(&results_path)?;

    // Ctrl-C: wait for the results being written, then summarise what is done and stop.
    let write_lock = Arc::new(Mutex::new(()));
    let bar = ProgressBar::new(stems.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} explain-dir [{bar:30}] {pos}/{len} images, {msg} ({elapsed}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    {
        let (lock, out, stems, shard, bar) = (write_lock.clone(), out.clone(), stems.clone(), args.shard, bar.clone());
        let handler = move || {
            let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
            bar.abandon();
            match write_summary(&out, &stems, shard, true) {
                Ok(s) => eprintln!(
                    "\ninterrupted: {}\nsummary in {}; continue with --resume",
                    summary_text(&s),
                    out.join(SUMMARY_FILE).display()
                ),
                Err(e) => eprintln!("\ninterrupted; the summary could not be written: {e}"),
            }
            // The handler removes the temporaries and exits with 130.
        };
        if let Err(e) = steex::outdir::on_interrupt(handler) {
            eprintln!("warning: no Ctrl-C handler ({e}); an interrupted run still resumes with --resume");
        }
    }
    bar.set_position(done as u64);
    bar.reset_eta();
    bar.set_message(tally.text());

    // Batches are fixed runs of `batch` images of this shard. A batch with an image left to
    // do is optimised whole again (its complete results are kept, not rewritten), so a
    // resumed image has the same company as in an uninterrupted run: the same result, bit
    // for bit on the CPU.
    let chunks: Vec<&[ImageEntry]> = mine.chunks(args.batch).collect();
    let nb = chunks.len();
    for (ci, chunk) in chunks.iter().enumerate() {
        if chunk.iter().all(|e| is_complete(&out, &e.stem)) {
            continue;
        }
        let t0 = Instant::now();
        let mut ready: Vec<(&ImageEntry, Array, LabelMap, Option<PathBuf>)> = Vec::new();
        let mut already = Vec::new();
        let mut failures = Vec::new();
        for e in chunk.iter() {
            let complete = is_complete(&out, &e.stem);
            let shared = &by_stem[e.stem.as_str()];
            if shared.len() > 1 {
                let files: Vec<String> = shared.iter().map(|p| p.display().to_string()).collect();
                let reason = format!(
                    "{} files share the stem `{}` ({}): results are named by stem, rename all but one",
                    shared.len(),
                    e.stem,
                    files.join(", ")
                );
                if !complete {
                    failures.push(ResultLine::failed(&e.stem, Some(&e.path), reason));
                }
                continue;
            }
            let mask_path = args.masks.as_ref().map(|m| mask_for(m, &e.stem));
            let loaded = (|| {
                if let Some(mp) = &mask_path
                    && !mp.is_file()
                {
                    return Err(bad(format!("no mask {} for image {}", mp.display(), e.path.display())));
                }
                let query = read_image(&e.path, (h, w))?;
                let labels = query_labels(&models, &e.path, &query, mask_path.as_deref(), seg_ref, &device)?;
                Ok::<_, Error>((query, labels))
            })();
            match loaded {
                Ok((q, l)) => {
                    already.push(complete);
                    ready.push((e, q, l, mask_path));
                }
                // A complete image that no longer loads keeps its result.
                Err(_) if complete => {}
                Err(err) => failures.push(ResultLine::failed(&e.stem, Some(&e.path), err.to_string())),
            }
        }
        if !failures.is_empty() {
            let _g = write_lock.lock().unwrap_or_else(|e| e.into_inner());
            for l in &failures {
                writer.append(l)?;
                tally.add(l);
                bar.inc(1);
            }
            bar.set_message(tally.text());
        }
        if already.iter().all(|&k| k) {
            continue;
        }

        let n = ready.len();
        let images = Tensor::cat(ready.iter().map(|(_, q, _, _)| q.to_tensor::<4>(&device)).collect(), 0);
        let labels = Tensor::cat(ready.iter().map(|(_, _, l, _)| l.to_tensor(&device)).collect(), 0);
        let base = tally.text();
        let steps = models.settings.steps;
        let mut observer = |r: &steex::explain::StepReport| {
            bar.set_message(format!("{base}; batch {}/{nb} step {}/{steps}", ci + 1, r.step));
        };
        let explained = models.g.mask(labels).map_err(|e| e.to_string()).and_then(|mask| {
            explain(&models.g, &models.c, images, &mask, &models.settings, &mut observer).map_err(|e| e.to_string())
        });
        let secs = t0.elapsed().as_secs_f64() / n as f64;
        let _g = write_lock.lock().unwrap_or_else(|e| e.into_inner());
        match explained {
            Err(reason) => {
                for (e, ..) in ready.iter().zip(&already).filter(|(_, k)| !**k).map(|(r, _)| r) {
                    let l = ResultLine::failed(&e.stem, Some(&e.path), format!("explanation failed: {reason}"));
                    writer.append(&l)?;
                    tally.add(&l);
                    bar.inc(1);
                }
            }
            Ok(ex) => {
                let arrays = split_explanation(&ex);
                let company: Vec<String> = ready.iter().map(|(e, ..)| e.stem.clone()).collect();
                for (i, (e, query, labels, mask_path)) in ready.iter().enumerate() {
                    if already[i] {
                        continue;
                    }
                    let dir = OutDir::create_in(&lock, &e.stem, true)?;
                    let inputs = Inputs {
                        generator: args.options.generator.clone(),
                        classifier: args.options.classifier.clone(),
                        image: Some(e.path.clone()),
                        mask: mask_path.clone(),
                        segmenter: args.segmenter.clone(),
                    };
                    let mut result = models.result_json(&ex.images[i], inputs);
                    result.image = Some(e.stem.clone());
                    result.batch = Some(BatchInfo { index: ci, images: company.clone() });
                    result.seconds = secs;
                    let r = write_result(dir, &models, query, labels, &arrays[i], result)?;
                    let l = ResultLine::from_result(&e.stem, &r);
                    writer.append(&l)?;
                    tally.add(&l);
                    bar.inc(1);
                }
            }
        }
        bar.set_message(tally.text());
    }

    let _g = write_lock.lock().unwrap_or_else(|e| e.into_inner());
    bar.finish_and_clear();
    let s = write_summary(&out, &stems, args.shard, false)?;
    eprintln!("{}: {}", out.display(), summary_text(&s));
    Ok(())
}
