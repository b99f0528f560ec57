//! `steex merge`: the shards of an `explain-dir` run as one `results.jsonl` and `summary.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use steex::Error;
use steex::dataset::{latest_by_stem, read_results};
use steex::error::bad;
use steex::io::read_json;
use steex::outdir::OutDir;
use steex::results::{PLAN_FILE, Plan, PlanMismatch, RESULTS_FILE, ResultLine, SUMMARY_FILE, Status, summarize};

/// Arguments of `steex merge`.
#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// Output folders of `steex explain-dir --shard K/N`.
    #[arg(required = true, num_args = 1..)]
    pub shards: Vec<PathBuf>,
    /// Folder for the merged `results.jsonl` and `summary.json` (written atomically); each
    /// line's `dir` points to the image's result folder in its shard.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace a non-empty --out.
    #[arg(long)]
    pub force: bool,
}

/// `steex merge`.
pub fn run(args: MergeArgs) -> Result<(), Error> {
    let out = OutDir::create(&args.out, args.force)?;
    let mut first: Option<(PathBuf, Plan)> = None;
    let mut given = BTreeSet::new();
    let mut merged: BTreeMap<String, ResultLine> = BTreeMap::new();
    let mut missing = BTreeSet::new();
    let mut duplicates = BTreeSet::new();
    for dir in &args.shards {
        let plan_path = dir.join(PLAN_FILE);
        if !plan_path.is_file() {
            return Err(bad(format!("{}: not an explain-dir output folder (no {PLAN_FILE})", dir.display())));
        }
        let plan: Plan = read_json(&plan_path)?;
        if let Some((d0, p0)) = &first {
            match p0.compatible(&plan, false) {
                Ok(()) => {}
                Err(PlanMismatch::Split | PlanMismatch::Shard) => {
                    return Err(bad(format!(
                        "{} is shard {} of {} images but {} is shard {} of {}: not the same run",
                        dir.display(),
                        plan.shard,
                        plan.n_total,
                        d0.display(),
                        p0.shard,
                        p0.n_total
                    )));
                }
                Err(PlanMismatch::Settings) => {
                    return Err(bad(format!(
                        "{} ran with settings {} but {} with {}: not the same run",
                        dir.display(),
                        plan.settings,
                        d0.display(),
                        p0.settings
                    )));
                }
            }
        } else {
            first = Some((dir.clone(), plan.clone()));
        }
        given.insert(plan.shard.index);
        let latest = latest_by_stem(&read_results(&dir.join(RESULTS_FILE))?);
        for stem in &plan.images {
            let Some(line) = latest.get(stem) else {
                missing.insert(stem.clone());
                continue;
            };
            let mut line = line.clone();
            if line.status == Status::Ok {
                line.dir = Some(dir.join(stem).display().to_string());
            }
            match merged.get(stem) {
                Some(prev) => {
                    duplicates.insert(stem.clone());
                    if prev.status != Status::Ok && line.status == Status::Ok {
                        merged.insert(stem.clone(), line);
                    }
                }
                None => {
                    merged.insert(stem.clone(), line);
                }
            }
        }
    }
    let (_, plan) = first.expect("at least one shard (clap requires it)");
    // An image missing from one shard but present in another is not missing.
    missing.retain(|s| !merged.contains_key(s));
    let absent: Vec<usize> = (0..plan.shard.count).filter(|k| !given.contains(k)).collect();
    let mut missing_shards = Vec::new();
    for &k in &absent {
        let n = steex::dataset::Shard { index: k, count: plan.shard.count }.len_of(plan.n_total);
        missing_shards.push(format!("{k}/{} ({n} images)", plan.shard.count));
    }

    let mut text = String::new();
    for l in merged.values() {
        text.push_str(&steex_io::json::to_line(l));
        text.push('\n');
    }
    let mut s = summarize(plan.n_total, merged.values());
    s.missing = missing.iter().cloned().collect();
    s.duplicates = duplicates.iter().cloned().collect();
    s.missing_shards = missing_shards.clone();
    out.write(RESULTS_FILE, text.as_bytes())?;
    out.write(SUMMARY_FILE, steex_io::json::to_pretty(&s).as_bytes())?;
    out.commit()?;

    let list = |v: &BTreeSet<String>| v.iter().take(20).cloned().collect::<Vec<_>>().join(", ");
    if !missing_shards.is_empty() {
        eprintln!("warning: shards not given: {}", missing_shards.join(", "));
    }
    if !missing.is_empty() {
        eprintln!("warning: {} images missing (no result in their shard): {}", missing.len(), list(&missing));
    }
    if !duplicates.is_empty() {
        eprintln!("warning: {} images duplicated (results in several shards): {}", duplicates.len(), list(&duplicates));
    }
    eprintln!(
        "{}: {} images from {} shard folders: {} explained ({} flipped, success rate {:.1}%), {} failed, {} without a result",
        args.out.display(),
        s.n_images,
        args.shards.len(),
        s.n_ok,
        s.n_success,
        100.0 * s.success_rate,
        s.n_failed,
        s.n_pending
    );
    Ok(())
}
