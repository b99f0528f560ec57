//! The `weights-convert` binary on hostile and broken inputs: non-zero exit, one clear
//! message naming the file, no panic, nothing executed, no output left behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(rel).canonicalize().unwrap()
}

fn run(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weights-convert"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap()
}

/// Asserts a clean failure whose stderr contains every one of `needles`.
fn assert_fails(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success; stderr: {err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "panic: {err}");
    assert_eq!(err.trim().lines().count(), 1, "expected one message line: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`: {err}");
    }
}

#[test]
fn malicious_pickles_are_refused_and_nothing_runs() {
    let cases = [
        ("os_system", "posix.system"),
        ("builtins_eval", "__builtin__.eval"),
        ("subprocess_popen", "Popen"),
        ("unknown_class", "steex_fixture.Unknown"),
    ];
    for (file, global) in cases {
        for suffix in ["", "_legacy"] {
            let dir = tempfile::tempdir().unwrap();
            let input = fixture(&format!("malicious/{file}{suffix}.pth"));
            let input = input.to_str().unwrap();
            let out = run(dir.path(), &["inspect", "--input", input]);
            assert_fails(&out, &[input, global, "refused"]);
            let out = run(dir.path(), &["state-dict", "--input", input, "--out", "x.safetensors"]);
            assert_fails(&out, &[global]);
            let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert!(left.is_empty(), "{file}{suffix}: files left behind or created: {left:?}");
        }
    }
}

#[test]
fn broken_files_fail_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = std::fs::read(fixture("densenet/checkpoint.tar")).unwrap();
    let legacy = std::fs::read(fixture("densenet/checkpoint_legacy.tar")).unwrap();
    std::fs::write(d.join("empty.pth"), b"").unwrap();
    std::fs::write(d.join("truncated.pth"), &good[..good.len() / 2]).unwrap();
    std::fs::write(d.join("truncated_legacy.pth"), &legacy[..legacy.len() / 3]).unwrap();
    std::fs::write(d.join("truncated_pickle.pth"), &legacy[..200]).unwrap();
    let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(d.join("random.pth"), &noise).unwrap();
    for f in ["missing.pth", "empty.pth", "truncated.pth", "truncated_legacy.pth", "truncated_pickle.pth", "random.pth"]
    {
        let out = run(d, &["state-dict", "--input", f, "--out", "out.safetensors"]);
        assert_fails(&out, &[f]);
        assert!(!d.join("out.safetensors").exists(), "{f}: output left behind");
    }
    // A directory as input.
    let out = run(d, &["inspect", "--input", "."]);
    assert_fails(&out, &["directory"]);
}

#[test]
fn bad_outputs_fail_and_an_existing_output_is_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = fixture("densenet/checkpoint.tar");
    let input = input.to_str().unwrap();
    std::fs::create_dir(d.join("adir")).unwrap();
    let out = run(d, &["state-dict", "--input", input, "--out", "adir"]);
    assert_fails(&out, &["adir", "directory"]);
    let out = run(d, &["state-dict", "--input", input, "--out", "no/such/dir/x.safetensors"]);
    assert_fails(&out, &["no/such/dir", "does not exist"]);

    std::fs::write(d.join("x.safetensors"), b"previous").unwrap();
    let out = run(d, &["state-dict", "--input", input, "--out", "x.safetensors"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(d.join("x.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(st.names().contains(&"classifier.weight"));
    assert_eq!(std::fs::read_dir(d).unwrap().count(), 2, "temporary files left behind");
}

#[test]
fn inspect_json_lists_keys_and_tensors_only_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("densenet/checkpoint_legacy.tar");
    let out = run(dir.path(), &["inspect", "--input", input.to_str().unwrap(), "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["container"], "legacy");
    assert_eq!(v["top_level_keys"], serde_json::json!(["epoch", "loss", "model_state_dict", "optimizer_state_dict"]));
    let t = v["tensors"].as_array().unwrap();
    let fc = t.iter().find(|t| t["name"] == "model_state_dict.classifier.weight").unwrap();
    assert_eq!(fc["shape"][0], 3);
    assert_eq!(fc["dtype"], "F32");
    assert!(t.iter().any(|t| t["dtype"] == "I64"), "num_batches_tracked listed with its dtype");
}

/// The `__metadata__` of a safetensors file (read here from its header, independently of
/// the crate's writer).
fn metadata(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"].clone()
}

/// `--preset` tags a model whose counts fit the preset (the names of its outputs or labels
/// follow it), and refuses one whose counts do not, naming both.
#[test]
fn presets_tag_fitting_models_and_refuse_others() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let densenet = fixture("explain/checkpoint.tar");
    let densenet = densenet.to_str().unwrap();
    // The explainer's DenseNet has 3 outputs: celeba's attributes, not bdd's 4 actions.
    let o = run(d, &["densenet", "--input", densenet, "--out", "c.safetensors", "--preset", "celeba"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(metadata(&d.join("c.safetensors"))["preset"], "celeba");
    let o = run(d, &["densenet", "--input", densenet, "--out", "b.safetensors", "--preset", "bdd"]);
    assert_fails(&o, &["--preset bdd", "4 decision outputs", "the checkpoint has 3"]);
    assert!(!d.join("b.safetensors").exists());
    let o = run(d, &["densenet", "--input", densenet, "--out", "x.safetensors", "--preset", "imagenet"]);
    assert_fails(&o, &["--preset imagenet"]);
    // The DeepLab fixture has 20 classes: bdd's, not celeba's 19.
    let deeplab = fixture("deeplab/checkpoint.tar");
    let deeplab = deeplab.to_str().unwrap();
    let o = run(d, &["deeplab", "--input", deeplab, "--out", "s.safetensors", "--preset", "bdd"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(metadata(&d.join("s.safetensors"))["preset"], "bdd");
    let o = run(d, &["deeplab", "--input", deeplab, "--out", "s2.safetensors", "--preset", "celeba"]);
    assert_fails(&o, &["--preset celeba", "20 classes"]);
    // A reduced SEAN generator is not the celeba preset's (19 labels, ngf 64, ...).
    let sean = fixture("sean_sq/latest_net_G.pth");
    let o = run(d, &["sean", "--input", sean.to_str().unwrap(), "--out", "g.safetensors", "--preset", "celeba"]);
    assert_fails(&o, &["preset celeba has 19 labels"]);
    assert!(!d.join("g.safetensors").exists());
}
