//! `weights-convert sean`, `steex encode` and `steex generate` as a user runs them.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

fn steex(cwd: &Path, args: &[&str]) -> Output {
    steex_command().args(args).current_dir(cwd).output().unwrap()
}

/// `weights-convert sean` on the square fixture, into `dir/g.safetensors`.
fn convert(dir: &Path, input: &str) -> Output {
    convert_sean_64(dir, input)
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = convert(dir.path(), "sean_sq/latest_net_G.pth");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["image.npy", "mask.png", "z_custom.npy", "codes.npy", "gen_nonoise.npy"] {
        std::fs::copy(fixture(&format!("sean_sq/{f}")), dir.path().join(f)).unwrap();
    }
    dir
}

#[test]
fn zip_and_legacy_generators_convert_to_identical_files_and_wrong_kinds_fail() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    assert!(convert(a.path(), "sean_sq/latest_net_G.pth").status.success());
    assert!(convert(b.path(), "sean_sq/latest_net_G_legacy.pth").status.success());
    let fa = std::fs::read(a.path().join("g.safetensors")).unwrap();
    assert_eq!(fa, std::fs::read(b.path().join("g.safetensors")).unwrap());
    let st = safetensors::SafeTensors::deserialize(&fa).unwrap();
    assert!(st.names().iter().all(|n| !n.contains("weight_orig") && !n.contains("param_free_norm.num_batches")));
    let c = tempfile::tempdir().unwrap();
    let out = convert(c.path(), "densenet/checkpoint.tar");
    assert_fails(&out, &["checkpoint.tar", "not a SEAN generator", "fc.weight"]);
    assert!(!c.path().join("g.safetensors").exists());
}

#[test]
fn encode_and_generate_match_pytorch_through_the_cli() {
    let dir = setup();
    let d = dir.path();
    let o = steex(
        d,
        &[
            "encode",
            "--generator",
            "g.safetensors",
            "--image",
            "image.npy",
            "--mask",
            "mask.png",
            "--out",
            "codes_rs.npy",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = steex::io::read_npy(&d.join("codes_rs.npy")).unwrap();
    assert!(max_abs_diff(&got, &npy("sean_sq/codes.npy")) <= 1e-4);
    let o = steex(
        d,
        &[
            "generate",
            "--generator",
            "g.safetensors",
            "--mask",
            "mask.png",
            "--codes",
            "z_custom.npy",
            "--noise",
            "off",
            "--out",
            "gen_rs.npy",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = steex::io::read_npy(&d.join("gen_rs.npy")).unwrap();
    assert_eq!(got.shape, vec![1, 3, 64, 64]);
    assert!(max_abs_diff(&got, &npy("sean_sq/gen_nonoise.npy")) <= 5e-4);
    let o = steex(
        d,
        &[
            "generate",
            "--generator",
            "g.safetensors",
            "--mask",
            "mask.png",
            "--codes",
            "z_custom.npy",
            "--out",
            "gen.png",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let png = image::open(d.join("gen.png")).unwrap();
    assert_eq!((png.width(), png.height()), (64, 64));
}

#[test]
fn bad_inputs_fail_clearly_and_write_nothing() {
    let dir = setup();
    let d = dir.path();
    // Label id out of range, mask of another size, RGB mask.
    let mut bad = image::open(d.join("mask.png")).unwrap().to_luma8();
    bad.put_pixel(3, 4, image::Luma([19]));
    bad.save(d.join("bad_label.png")).unwrap();
    image::GrayImage::new(64, 32).save(d.join("small.png")).unwrap();
    image::RgbImage::new(64, 64).save(d.join("rgb.png")).unwrap();
    // Codes of the wrong shape, and with a NaN.
    let codes = steex::io::read_npy(&d.join("codes.npy")).unwrap();
    let wrong = steex::io::Array { shape: vec![1, 18, 24], data: codes.data[..18 * 24].to_vec() };
    steex::io::write_npy(&d.join("wrong.npy"), &wrong).unwrap();
    let mut nan = codes.clone();
    nan.data[7] = f32::NAN;
    steex::io::write_npy(&d.join("nan.npy"), &nan).unwrap();

    let enc = |mask: &str, image: &str| {
        steex(d, &["encode", "--generator", "g.safetensors", "--image", image, "--mask", mask, "--out", "out.npy"])
    };
    let generate = |codes: &str| {
        steex(
            d,
            &["generate", "--generator", "g.safetensors", "--mask", "mask.png", "--codes", codes, "--out", "out.npy"],
        )
    };
    assert_fails(&enc("bad_label.png", "image.npy"), &["bad_label.png", "label id 19", "(x 3, y 4)"]);
    assert_fails(&enc("small.png", "image.npy"), &["small.png", "aspect ratios differ", "64x32"]);
    assert_fails(&enc("rgb.png", "image.npy"), &["rgb.png", "single-channel"]);
    assert_fails(&enc("mask.png", "missing.png"), &["missing.png"]);
    assert_fails(&generate("wrong.npy"), &["wrong.npy", "[1, 19, 24]"]);
    assert_fails(&generate("nan.npy"), &["nan.npy", "not finite"]);
    let o = steex(
        d,
        &[
            "generate",
            "--generator",
            "missing.safetensors",
            "--mask",
            "mask.png",
            "--codes",
            "codes.npy",
            "--out",
            "out.npy",
        ],
    );
    assert_fails(&o, &["missing.safetensors"]);
    let o = steex(
        d,
        &[
            "generate",
            "--generator",
            "g.safetensors",
            "--mask",
            "mask.png",
            "--codes",
            "codes.npy",
            "--noise",
            "loud",
            "--out",
            "out.npy",
        ],
    );
    assert_fails(&o, &["loud"]);
    assert!(!d.join("out.npy").exists(), "an output was written by a failing command");
}
