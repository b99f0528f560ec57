//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use steex::device::{DeviceArg, TEST_DEVICE_VAR, select};
use steex::io::{Array, read_npy};

/// A committed fixture under `tests/fixtures` of the checkout the tests were built in, or of
/// `STEEX_TEST_ROOT` (for test binaries carried to another machine: `tools/gpu_bench.sh`).
pub fn fixture(rel: &str) -> PathBuf {
    let root =
        std::env::var_os("STEEX_TEST_ROOT").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    root.join("tests/fixtures").join(rel)
}

/// The workspace's binary `name` (`steex`, `weights-convert`): beside the `steex` the tests
/// were built with, or in `STEEX_TEST_BIN_DIR` (carried test binaries).
pub fn bin_path(name: &str) -> PathBuf {
    match std::env::var_os("STEEX_TEST_BIN_DIR") {
        Some(dir) => PathBuf::from(dir).join(name),
        None => Path::new(env!("CARGO_BIN_EXE_steex")).with_file_name(name),
    }
}

/// The device the tests run on: `STEEX_TEST_DEVICE=cpu|wgpu|cuda` (default `cpu`), read here
/// only, so that one build of the tests (with `--features steex/wgpu`) serves every backend.
pub fn test_device_arg() -> DeviceArg {
    DeviceArg::from_env(TEST_DEVICE_VAR).unwrap_or_else(|e| panic!("{TEST_DEVICE_VAR}: {e}"))
}

/// The started device of [`test_device_arg`] (started and checked once per test binary).
pub fn test_device() -> Device {
    static DEVICE: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let device = select(test_device_arg()).unwrap_or_else(|e| panic!("{TEST_DEVICE_VAR}: {e}"));
            eprintln!("tests run on {}", steex::device::describe(&device));
            device
        })
        .clone()
}

/// Whether the tests run on the CPU backend (some check what only the CPU path does).
pub fn on_cpu() -> bool {
    test_device_arg() == DeviceArg::Cpu
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

/// The `steex` binary with `--device` from [`test_device_arg`] (a global option: the
/// subcommand and its arguments follow).
pub fn steex_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(bin_path("steex"));
    cmd.args(["--device", test_device_arg().name()]);
    cmd
}

/// Runs one of the workspace's binaries (`steex`, `weights-convert`) in `cwd`; `steex` runs on
/// the tests' device ([`steex_command`]) unless `args` name one.
pub fn run_bin(cwd: &Path, name: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = if name == "steex" && !args.iter().any(|a| a.starts_with("--device")) {
        steex_command()
    } else {
        std::process::Command::new(bin_path(name))
    };
    cmd.args(args).current_dir(cwd).output().unwrap()
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

/// The explainer fixture's models converted into `cwd`: the 64x64 SEAN generator
/// (`sean_sq`) as `g.safetensors` and the explain fixture's DenseNet as `c.safetensors`.
pub fn convert_explain_models(cwd: &Path) {
    let o = convert_sean_64(cwd, "sean_sq/latest_net_G.pth");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c = fixture("explain/checkpoint.tar");
    let o = run_bin(cwd, "weights-convert", &["densenet", "--input", c.to_str().unwrap(), "--out", "c.safetensors"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Records that a full-width test was skipped (its fixtures under `tests/fixtures/full` are
/// absent): a line on stderr, and one appended to the file named by `STEEX_SKIP_LOG` when set,
/// which CI counts and prints (`.ci/run`), so a skip is never silent.
pub fn skip_full(test: &str, reason: &str) {
    eprintln!("skipped {test}: {reason}");
    if let Some(log) = std::env::var_os("STEEX_SKIP_LOG") {
        use std::io::Write;
        let line = format!("{test}: {reason}\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!("STEEX_SKIP_LOG {}: {e}", std::path::Path::new(&log).display());
        }
    }
}
