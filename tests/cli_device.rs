//! `steex device`: the chosen device starts and is printed; a backend the build lacks is a
//! clear error, not a panic.

mod common;

use common::*;

#[test]
fn device_prints_the_tests_device() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_bin(dir.path(), "steex", &["device"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("Device<"), "{out}");
    if test_device_arg() == steex::device::DeviceArg::Wgpu {
        // The adapter as it names itself, and what the kernels are compiled for.
        assert!(out.contains(": ") && out.contains('('), "no adapter in {out}");
    }
}

#[test]
fn backends_the_build_lacks_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut lacking = Vec::new();
    if cfg!(not(feature = "cuda")) {
        lacking.push("cuda");
    }
    if cfg!(not(feature = "wgpu")) {
        lacking.push("wgpu");
    }
    for d in lacking {
        let o = run_bin(dir.path(), "steex", &["device", "--device", d]);
        let want = format!("rebuild with `--features {d}`");
        assert_fails(&o, &[&format!("--device {d}"), &want]);
    }
    let o = run_bin(dir.path(), "steex", &["--device", "tpu", "device"]);
    assert_fails(&o, &["tpu"]);
}
