//! Races: two writers on one output (both orders), every writer against a held lock,
//! readers while a writer runs.

use std::path::Path;

use steex::outdir::OutputLock;

use crate::support::*;

/// The writers of a result folder, all given `--out res`.
fn writers() -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("explain", explain("res", 2)),
        ("explain --force", [explain("res", 2), vec!["--force".into()]].concat()),
        ("explain-dir", explain_dir("res", &[])),
        ("explain-dir --resume", explain_dir("res", &["--resume"])),
        ("explain-dir --force", explain_dir("res", &["--force"])),
        ("merge", ["merge", "shard", "--out", "res"].map(String::from).to_vec()),
        ("merge --force", ["merge", "shard", "--out", "res", "--force"].map(String::from).to_vec()),
        ("demo", demo("res")),
        ("demo --force", [demo("res"), vec!["--force".into()]].concat()),
    ]
}

#[test]
fn every_writer_refuses_a_held_output_at_once_and_changes_nothing() {
    let dir = world();
    let d = dir.path();
    std::fs::create_dir(d.join("res")).unwrap();
    std::fs::write(d.join("res/earlier.txt"), b"an earlier result").unwrap();
    let lock = OutputLock::acquire(&d.join("res")).unwrap();
    let before = snapshot(d);
    let pid = std::process::id().to_string();
    for (name, a) in writers() {
        let o = run(d, &a);
        let err = stderr(&o);
        assert!(!o.status.success(), "{name}: ran on a held output");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(err.contains("res") && err.contains(&format!("pid {pid}")), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: one line expected: {err}");
        assert!(err.starts_with("error: "), "{name}: {err}");
        assert!(snapshot(d) == before, "{name}: changed the folder");
    }
    drop(lock);
    assert_eq!(names(d), ["c.safetensors", "g.safetensors", "images", "masks", "res"], "the lock file is left");
}

#[test]
fn two_explains_on_one_folder_give_one_result_and_one_clear_error() {
    let dir = world();
    let d = dir.path();
    let rounds = 10;
    let (mut refused_by_lock, mut refused_non_empty) = (0, 0);
    for round in 0..rounds {
        let out = format!("res{round}");
        // Both orders of start; different steps tell the results apart.
        let (first, second) = if round % 2 == 0 { (2, 3) } else { (3, 2) };
        let a = spawn(d, &explain(&out, first));
        let b = spawn(d, &explain(&out, second));
        let (pa, pb) = (a.id(), b.id());
        let (oa, ob) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        assert!(oa.status.success() != ob.status.success(), "round {round}: {}\n{}", stderr(&oa), stderr(&ob));
        let (won, lost, winner_pid, winner_steps) =
            if oa.status.success() { (&oa, &ob, pa, first) } else { (&ob, &oa, pb, second) };
        ok(won);
        let err = stderr(lost);
        assert!(!err.contains("panicked") && err.contains(&out), "{err}");
        if err.contains(&format!("pid {winner_pid}")) {
            refused_by_lock += 1;
        } else {
            assert!(err.contains("not empty") && err.contains("--force"), "round {round}: {err}");
            refused_non_empty += 1;
        }
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join(&out).join("result.json")).unwrap()).unwrap();
        assert_eq!(r["settings"]["steps"], winner_steps, "round {round}: the result is not the winner's");
        assert_no_hidden(d);
    }
    eprintln!(
        "explain races: {rounds} tried, each one result and one error \
         ({refused_by_lock} refused by the lock, {refused_non_empty} by the finished result)"
    );
}

/// Starts `first` on `out`, and once it holds the lock runs `second` there: refused, with
/// the first's pid; the first then finishes with one line per image.
fn second_writer_refused(d: &Path, out: &str, first: &[String], second: &[String]) {
    let mut a = spawn(d, first);
    let pid = a.id();
    let lock = d.join(format!(".{out}.lock"));
    assert!(wait_for(&mut a, || lock_pid(&lock) == Some(pid)), "{out}: the first writer ended before it was seen");
    let o = run(d, second);
    let err = stderr(&o);
    assert!(!o.status.success() && !err.contains("panicked"), "{err}");
    assert!(err.contains(out) && err.contains(&format!("pid {pid}")), "{err}");
    ok(&a.wait_with_output().unwrap());
    let text = std::fs::read_to_string(d.join(out).join("results.jsonl")).unwrap();
    assert_eq!(text.lines().count(), N_IMAGES, "one line per image:\n{text}");
    assert_no_hidden(&d.join(out));
    assert_no_hidden(d);
}

#[test]
fn a_second_explain_dir_is_refused_while_the_first_runs_in_both_orders() {
    let dir = world();
    let d = dir.path();
    // A fresh run, then a resume of the same folder while it runs.
    second_writer_refused(d, "res", &explain_dir("res", &[]), &explain_dir("res", &["--resume"]));
    // A run starting over, then another one that would start over too.
    second_writer_refused(d, "res", &explain_dir("res", &["--force"]), &explain_dir("res", &["--force"]));
    // A resumed run (of a killed one), then one that would delete its folder.
    let mut a = spawn(d, &explain_dir("res", &["--force"]));
    assert!(wait_for(&mut a, || complete(&d.join("res")) >= 1 || line_count(&d.join("res")) >= 1));
    kill(a);
    second_writer_refused(d, "res", &explain_dir("res", &["--resume"]), &explain_dir("res", &["--force"]));
    eprintln!("explain-dir races: 3 tried, each second writer refused with the first's pid");
}

#[test]
fn readers_see_only_complete_results_while_a_writer_runs() {
    let dir = world();
    let d = dir.path();
    let out = d.join("res");
    let mut w = spawn(d, &explain_dir("res", &[]));
    let (mut merges, mut metrics, mut i) = (0, 0, 0);
    while w.try_wait().unwrap().is_none() || i == 0 {
        i += 1;
        let had_plan = out.join("plan.json").is_file();
        let n0 = complete(&out);
        let m = format!("m{i}");
        let o = run(d, &["merge".into(), "res".into(), "--out".into(), m.clone()]);
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{err}");
        if o.status.success() {
            merges += 1;
            let text = std::fs::read_to_string(d.join(&m).join("results.jsonl")).unwrap();
            let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            for l in &lines {
                if l["status"] == "ok" {
                    let dir = d.join(l["dir"].as_str().unwrap());
                    assert!(dir.join("result.json").is_file(), "merge {i}: an incomplete result: {l}");
                }
            }
            assert!(lines.iter().filter(|l| l["status"] == "ok").count() >= n0, "merge {i} lost results");
        } else {
            assert!(!had_plan, "merge {i} failed on a started run: {err}");
        }
        let n0 = complete(&out);
        let a = ["metrics", "--real", "images", "--counterfactuals", "res", "--json"].map(String::from);
        let o = run(d, &a);
        let n1 = complete(&out);
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{err}");
        if o.status.success() {
            metrics += 1;
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let n = v["n_pairs"].as_u64().unwrap() as usize;
            assert!((n0..=n1).contains(&n), "metrics {i}: {n} pairs, {n0}..{n1} complete results");
        } else {
            assert_eq!(n0, 0, "metrics {i} failed with results there: {err}");
        }
    }
    ok(&w.wait_with_output().unwrap());
    eprintln!("readers during a run: {merges} merges and {metrics} metrics read only complete results");
    assert!(merges + metrics >= 2, "too few reads during the run");
}
