//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use steex::io::{Array, read_npy};

/// A committed fixture under `tests/fixtures`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

/// The CPU device the tests run on.
pub fn cpu() -> Device {
    Device::flex()
}

/// Max absolute difference between two arrays of the same number of elements.
pub fn max_abs_diff(a: &Array, b: &Array) -> f32 {
    assert_eq!(a.data.len(), b.data.len(), "shapes {:?} vs {:?}", a.shape, b.shape);
    a.data.iter().zip(&b.data).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// Reads a fixture `.npy`.
pub fn npy(rel: &str) -> Array {
    read_npy(&fixture(rel)).unwrap()
}

/// Asserts an array carries signal (not near-constant), so a comparison means something.
pub fn assert_signal(a: &Array, what: &str) {
    let n = a.data.len() as f64;
    let mean = a.data.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = a.data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    assert!(var.sqrt() > 1e-3, "{what} is near-constant (std {})", var.sqrt());
}

/// Asserts a command failed cleanly (no panic) with every one of `needles` in its stderr.
pub fn assert_fails(out: &std::process::Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`: {err}");
    }
}

/// Runs one of the workspace's binaries (`steex`, `weights-convert`) in `cwd`.
pub fn run_bin(cwd: &Path, name: &str, args: &[&str]) -> std::process::Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_steex")).with_file_name(name);
    std::process::Command::new(bin).args(args).current_dir(cwd).output().unwrap()
}

/// `weights-convert sean` of a committed 64x64 generator fixture into `cwd/g.safetensors`.
pub fn convert_sean_64(cwd: &Path, input: &str) -> std::process::Output {
    let input = fixture(input);
    run_bin(
        cwd,
        "weights-convert",
        &["sean", "--input", input.to_str().unwrap(), "--out", "g.safetensors", "--width", "64", "--aspect-ratio", "1"],
    )
}
