//! A full disk, a read-only output, an output deleted mid-run: clear errors naming the file,
//! no panic, no partial output, and a later run completes.

use std::path::Path;

use crate::support::*;

/// Asserts a clean failure whose message names `what` and holds one of `why`.
fn fails(o: &std::process::Output, what: &str, why: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "{what}: succeeded");
    assert!(o.status.code().is_some_and(|c| c != 101), "{what}: killed or panicked: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(err.contains(what) && why.iter().any(|w| err.contains(w)), "expected `{what}` and {why:?} in: {err}");
}

const FULL: &[&str] = &["No space left on device"];

/// A writer on a full disk (one page free: enough for its lock file) fails naming the file
/// it could not write and leaves nothing; with space, the same command then completes.
fn full_then_room(d: &Path, small: &Path, name: &str, a: &[String]) {
    let before = names(small);
    let filler = fill(small, 4096);
    let o = run(d, a);
    fails(&o, name, FULL);
    let mut expected = [before, vec!["filler".to_string()]].concat();
    expected.sort();
    assert_eq!(names(small), expected, "{name}: partial output left");
    std::fs::remove_file(filler).unwrap();
    ok(&run(d, a));
    assert_no_hidden(small);
}

#[test]
fn every_writer_on_a_full_disk_fails_naming_the_file_and_a_later_run_completes() {
    let dir = world();
    let d = dir.path();
    let small = d.join("small");
    let Some(fs) = Tmpfs::mount(&small, "4m", "") else { return };
    full_then_room(d, &small, "small/res", &explain("small/res", 2));
    full_then_room(d, &small, "small/demo", &demo("small/demo"));
    // A dataset run that fills the disk part way: the results written stay, the one being
    // written is removed; `--resume` with space finishes the run.
    ok(&run(d, &explain_dir("shard", &[])));
    let filler = fill(&small, 900 * 1024);
    let o = run(d, &explain_dir("small/dir", &[]));
    fails(&o, "small/dir", FULL);
    let done = complete(&small.join("dir"));
    assert!(done < good_stems().len(), "the disk never filled ({done} results)");
    assert_no_hidden(&small.join("dir"));
    assert_no_hidden(&small);
    std::fs::remove_file(filler).unwrap();
    ok(&run(d, &explain_dir("small/dir", &["--resume"])));
    assert_same_results(&small.join("dir"), &d.join("shard"));
    full_then_room(d, &small, "small/merged", &["merge", "shard", "--out", "small/merged"].map(String::from));
    eprintln!("disk full: explain, demo, explain-dir ({done} of 11 results before the disk filled), merge");
    drop(fs);
}

#[test]
fn read_only_outputs_fail_clearly() {
    let dir = world();
    let d = dir.path();
    let ro = d.join("ro");
    // Root writes anywhere a mode allows nothing: a read-only mount then; chmod otherwise.
    let _fs = match Tmpfs::mount(&ro, "1m", ",ro") {
        Some(fs) => Some(fs),
        None => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
            if std::fs::write(ro.join("probe"), b"x").is_ok() {
                eprintln!("SKIPPED: cannot make a read-only folder here");
                return;
            }
            None
        }
    };
    let why = |o: &std::process::Output| {
        let e = stderr(o);
        if e.contains("Read-only file system") { "Read-only file system" } else { "Permission denied" }
    };
    for (what, a) in [
        ("ro/res", explain("ro/res", 2)),
        ("ro/res", explain_dir("ro/res", &[])),
        ("ro/plan.json", explain_dir("ro", &[])),
        ("ro/m", ["merge", "x", "--out", "ro/m"].map(String::from).to_vec()),
        ("ro/demo", demo("ro/demo")),
    ] {
        let o = run(d, &a);
        fails(&o, what, &[why(&o)]);
        assert_eq!(stderr(&o).trim().lines().count(), 1, "{what}: {}", stderr(&o));
    }
    assert!(names(&ro).is_empty());
    assert_no_hidden(d);
}

#[test]
fn an_output_deleted_mid_run_ends_the_run_clearly_and_resume_starts_again() {
    let dir = world();
    let d = dir.path();
    let out = d.join("res");
    let mut w = spawn(d, &explain_dir("res", &[]));
    assert!(wait_for(&mut w, || complete(&out) >= 1), "the run ended before its first result");
    // (The run keeps writing into it meanwhile.)
    while out.exists() {
        let _ = std::fs::remove_dir_all(&out);
    }
    let o = w.wait_with_output().unwrap();
    fails(&o, "res/", &["does not exist", "No such file or directory"]);
    assert_no_hidden(d);
    ok(&run(d, &explain_dir("res", &["--resume"])));
    assert_eq!(line_count(&out), N_IMAGES);
    assert_eq!(complete(&out), good_stems().len());

    // `explain` whose output's folder goes while it computes.
    std::fs::create_dir(d.join("gone")).unwrap();
    let mut e = spawn(d, &explain("gone/res", 40));
    let pid = e.id();
    assert!(wait_for(&mut e, || lock_pid(&d.join("gone/.res.lock")) == Some(pid)));
    while d.join("gone").exists() {
        let _ = std::fs::remove_dir_all(d.join("gone"));
    }
    let o = e.wait_with_output().unwrap();
    fails(&o, "gone/", &["No such file or directory"]);
    assert!(!d.join("gone").exists());
}
