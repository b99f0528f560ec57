//! The kill loop: an `explain-dir` run SIGKILLed at seeded random moments, resumed each
//! time, ends equal to an uninterrupted run.

use std::path::Path;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::*;

/// Kills survived by one run.
const KILLS: usize = 20;

/// Where a run is killed: each is a change of the output folder the test observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// The run wrote its pid into the output's lock file (before anything else).
    Locked,
    /// `results.jsonl` was replaced (the start of a run rewrites it): during the first
    /// batch's optimisation.
    Rewritten,
    /// A result folder is being written (a hidden temporary in the output), or one more is
    /// complete.
    MidWrite,
    /// The n-th result folder of this run was renamed into place (its line may not be
    /// written yet).
    Result(usize),
    /// The n-th line of this run was appended to `results.jsonl`.
    Line(usize),
}

/// What the folder looks like before a run starts.
struct Before {
    complete: usize,
    results_id: Option<(u64, u64)>,
}

impl Event {
    fn seen(self, out: &Path, lock: &Path, pid: u32, b: &Before) -> bool {
        let rewritten = || {
            let id = file_id(&out.join("results.jsonl"));
            id.is_some() && id != b.results_id
        };
        match self {
            Event::Locked => lock_pid(lock) == Some(pid),
            Event::Rewritten => rewritten(),
            Event::MidWrite => {
                complete(out) > b.complete || names(out).iter().any(|n| n.starts_with('.') && n.contains(".tmp-"))
            }
            Event::Result(n) => complete(out) >= b.complete + n,
            Event::Line(n) => rewritten() && line_count(out) >= b.complete + n,
        }
    }
}

/// The seeded choice of the next moment. An event that needs progress (a result, a line)
/// is drawn with the chance `(images left - 1) / kills left`, so the kills spread over the
/// whole run and every one lands on a running process; the others happen before a run's
/// first result.
fn next_event(rng: &mut StdRng, left_images: usize, left_kills: usize) -> Event {
    if rng.random_range(0..left_kills) < left_images.saturating_sub(1) {
        let n = rng.random_range(1..=3.min(left_images - 1));
        [Event::MidWrite, Event::Result(n), Event::Line(n)][rng.random_range(0..3)]
    } else {
        [Event::Locked, Event::Rewritten][rng.random_range(0..2)]
    }
}

#[test]
fn a_run_killed_twenty_times_ends_equal_to_an_uninterrupted_one() {
    let t0 = Instant::now();
    let dir = world();
    let d = dir.path();
    ok(&run(d, &explain_dir("clean", &[])));
    let clean_secs = t0.elapsed().as_secs_f64();

    let out = d.join("killed");
    let lock = d.join(".killed.lock");
    let mut rng = StdRng::seed_from_u64(29);
    let mut seen = Vec::new();
    let mut first = true;
    while seen.len() < KILLS {
        let b = Before { complete: complete(&out), results_id: file_id(&out.join("results.jsonl")) };
        let left = good_stems().len() - b.complete;
        let event = next_event(&mut rng, left, KILLS - seen.len());
        let a = if first { explain_dir("killed", &[]) } else { explain_dir("killed", &["--resume"]) };
        first = false;
        let mut child = spawn(d, &a);
        let pid = child.id();
        let hit = wait_for(&mut child, || event.seen(&out, &lock, pid, &b));
        let o = kill(child);
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
        assert!(hit, "kill {}: the run ended before {event:?}: {}", seen.len() + 1, stderr(&o));
        assert!(o.status.code().is_none(), "kill {}: not killed ({:?})", seen.len() + 1, o.status);
        // Never two lines for one image, whatever the moment.
        let text = std::fs::read_to_string(out.join("results.jsonl")).unwrap_or_default();
        // (A line cut by the kill is not a line: readers skip it.)
        let mut stems: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| v["image"].as_str().unwrap_or_default().to_string())
            .collect();
        let n = stems.len();
        stems.sort();
        stems.dedup();
        assert_eq!(stems.len(), n, "kill {}: an image has two lines:\n{text}", seen.len() + 1);
        seen.push((event, complete(&out)));
    }
    ok(&run(d, &explain_dir("killed", &["--resume"])));
    let files = assert_same_results(&out, &d.join("clean"));
    assert_no_hidden(d);
    let progress: Vec<String> = seen.iter().map(|(e, c)| format!("{e:?}:{c}")).collect();
    eprintln!(
        "kill loop: {} SIGKILLs survived, {files} files equal to the uninterrupted run's; \
         uninterrupted run {clean_secs:.1} s, whole test {:.1} s; (event:complete after) {}",
        seen.len(),
        t0.elapsed().as_secs_f64(),
        progress.join(" ")
    );
    for e in [Event::Locked, Event::Rewritten] {
        assert!(seen.iter().any(|(x, _)| *x == e), "no kill at {e:?}");
    }
    assert!(seen.iter().any(|(x, _)| matches!(x, Event::MidWrite | Event::Result(_) | Event::Line(_))));
}
