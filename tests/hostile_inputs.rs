//! Hostile and broken inputs given to the real `steex` and `weights-convert` binaries, as a
//! user downloading checkpoints and images would: each must fail with a non-zero exit and one
//! clear line naming the input and what was expected, never a panic, and leave no output and
//! no temporary file behind. Also: images converted rather than refused (16-bit, grayscale,
//! RGBA), outputs replaced atomically, runs killed by SIGTERM/SIGINT/SIGKILL, and
//! bit-identical results from the same seed.
//!
//! Cases covered elsewhere (not repeated here): malicious pickles in both serialisations
//! (`weights-convert/tests/cli.rs::malicious_pickles_are_refused_and_nothing_runs`);
//! missing, empty, truncated and random-bytes checkpoints, a directory as input
//! (`::broken_files_fail_with_the_file_named`); an output that is a directory or in a
//! missing folder, existing output replaced whole (`::bad_outputs_fail_and_...`); a
//! checkpoint of the wrong kind (`tests/cli_sean.rs::zip_and_legacy_...`,
//! `tests/cli_classify.rs`); mask label out of range, wrong size, RGB mask, missing image,
//! codes of the wrong shape or with NaN, missing generator (`tests/cli_sean.rs::bad_inputs_...`);
//! an image too small for the model (`tests/cli_classify.rs`); unknown region and attribute
//! names, attribute and region ids out of range, non-empty result folder without `--force`
//! (`tests/cli_explain.rs`).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{convert_explain_models, fixture, run_bin, steex_command};

/// Asserts a clean refusal: non-zero exit, exactly one line on stderr that names `input`
/// and holds every needle, no panic or backtrace; `outputs` do not exist and `dir` holds no
/// temporary file.
fn assert_refused(out: &Output, input: &str, needles: &[&str], dir: &Path, outputs: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a refusal of {input}, got success; stderr: {err}");
    assert!(out.status.code().is_some_and(|c| c != 101), "{input}: killed or panicked ({:?}): {err}", out.status);
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!err.contains(bad), "{input}: `{bad}` in stderr: {err}");
    }
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{input}: expected one message line, got: {err}");
    assert!(err.contains(input), "{input}: the message does not name the input: {err}");
    for n in needles {
        assert!(err.contains(n), "{input}: stderr lacks `{n}`: {err}");
    }
    for o in outputs {
        assert!(!dir.join(o).exists(), "{input}: output {o} left behind");
    }
    assert_no_temporaries(dir);
}

fn assert_no_temporaries(dir: &Path) {
    let names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.contains(".tmp") || n.ends_with(".old")), "temporaries left: {names:?}");
}

fn steex(cwd: &Path, args: &[&str]) -> Output {
    run_bin(cwd, "steex", args)
}

/// A folder with the 64x64 generator, the explain fixture's classifier, an image, a mask and
/// codes.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    convert_explain_models(d);
    for f in ["image.npy", "mask.png", "codes.npy"] {
        std::fs::copy(fixture(&format!("sean_sq/{f}")), d.join(f)).unwrap();
    }
    dir
}

/// Rewrites a safetensors file through `edit` (tensors as (dtype, shape, bytes) and metadata).
fn rewrite_safetensors(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut HashMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)>, &mut HashMap<String, String>),
) {
    let bytes = std::fs::read(src).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: HashMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)> =
        st.tensors().into_iter().map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec()))).collect();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut metadata = meta.metadata().clone().unwrap_or_default();
    edit(&mut tensors, &mut metadata);
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(dst, safetensors::serialize(views, Some(metadata)).unwrap()).unwrap();
}

#[test]
fn tampered_weights_files_are_refused_with_the_tensor_or_key_named() {
    let dir = setup();
    let d = dir.path();
    let g = d.join("g.safetensors");
    let c = d.join("c.safetensors");
    rewrite_safetensors(&g, &d.join("g_missing.safetensors"), |t, _| {
        t.remove("conv_img.weight").unwrap();
    });
    rewrite_safetensors(&g, &d.join("g_extra.safetensors"), |t, _| {
        t.insert("extra.weight".into(), (safetensors::Dtype::F32, vec![1], vec![0; 4]));
    });
    rewrite_safetensors(&g, &d.join("g_shape.safetensors"), |t, _| {
        t.insert("conv_img.bias".into(), (safetensors::Dtype::F32, vec![4], vec![0; 16]));
    });
    rewrite_safetensors(&g, &d.join("g_dtype.safetensors"), |t, _| {
        let (_, s, b) = t.remove("conv_img.bias").unwrap();
        t.insert("conv_img.bias".into(), (safetensors::Dtype::I32, s, b));
    });
    rewrite_safetensors(&g, &d.join("g_kind.safetensors"), |_, m| {
        m.insert("kind".into(), "banana".into());
    });
    rewrite_safetensors(&g, &d.join("g_nokind.safetensors"), |_, m| {
        m.remove("kind");
    });
    let width_key = {
        let bytes = std::fs::read(&g).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let m = meta.metadata().clone().unwrap();
        ["width", "crop_size", "image_width"].into_iter().find(|k| m.contains_key(*k)).map(str::to_string)
    };
    if let Some(k) = &width_key {
        rewrite_safetensors(&g, &d.join("g_meta.safetensors"), |_, m| {
            m.insert(k.clone(), "wide".into());
        });
    }
    rewrite_safetensors(&c, &d.join("c_shape.safetensors"), |t, _| {
        t.insert("classifier.weight".into(), (safetensors::Dtype::F32, vec![2, 2], vec![0; 16]));
    });
    let full = std::fs::read(&g).unwrap();
    std::fs::write(d.join("g_truncated.safetensors"), &full[..full.len() / 2]).unwrap();
    std::fs::write(d.join("g_empty.safetensors"), b"").unwrap();
    let noise: Vec<u8> = (0..2048u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
    std::fs::write(d.join("g_random.safetensors"), &noise).unwrap();
    // A checkpoint given where converted weights are expected.
    std::fs::copy(fixture("malicious/os_system.pth"), d.join("g_pth.safetensors")).unwrap();

    let generate = |g: &str| {
        steex(d, &["generate", "--generator", g, "--mask", "mask.png", "--codes", "codes.npy", "--out", "out.npy"])
    };
    let mut cases: Vec<(&str, Vec<&str>)> = vec![
        ("g_missing.safetensors", vec!["conv_img.weight", "missing"]),
        ("g_extra.safetensors", vec!["extra.weight"]),
        ("g_shape.safetensors", vec!["conv_img.bias", "[4]"]),
        ("g_dtype.safetensors", vec!["conv_img.bias", "F32"]),
        ("g_kind.safetensors", vec!["banana"]),
        ("g_nokind.safetensors", vec!["kind"]),
        ("g_truncated.safetensors", vec![]),
        ("g_empty.safetensors", vec![]),
        ("g_random.safetensors", vec![]),
        ("g_pth.safetensors", vec![]),
    ];
    if let Some(k) = &width_key {
        cases.push(("g_meta.safetensors", vec![k.as_str()]));
    }
    for (file, needles) in cases {
        assert_refused(&generate(file), file, &needles, d, &["out.npy"]);
    }
    let img = fixture("sean_sq/image.npy");
    let o = steex(d, &["classify", "--classifier", "c_shape.safetensors", "--image", img.to_str().unwrap()]);
    assert_refused(&o, "c_shape.safetensors", &["classifier.weight", "[2, 2]"], d, &[]);
    let o = steex(d, &["classify", "--classifier", "g_truncated.safetensors", "--image", img.to_str().unwrap()]);
    assert_refused(&o, "g_truncated.safetensors", &[], d, &[]);
}

/// The logits `steex classify --json` prints for `image`.
fn classify(d: &Path, image: &str) -> Vec<f64> {
    let o = steex(d, &["classify", "--classifier", "c.safetensors", "--image", image, "--json"]);
    assert!(o.status.success(), "{image}: {}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn image_formats_are_converted_and_corrupt_images_refused() {
    let dir = setup();
    let d = dir.path();
    // A 64x64 picture with structure, in 8-bit RGB and the other formats a user may have.
    let rgb = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, ((x + y) * 2) as u8]));
    rgb.save(d.join("rgb.png")).unwrap();
    let rgba = image::RgbaImage::from_fn(64, 64, |x, y| {
        let p = rgb.get_pixel(x, y);
        image::Rgba([p[0], p[1], p[2], 128])
    });
    rgba.save(d.join("rgba.png")).unwrap();
    let rgb16 = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(64, 64, |x, y| {
        let p = rgb.get_pixel(x, y);
        image::Rgb([p[0] as u16 * 257, p[1] as u16 * 257, p[2] as u16 * 257])
    });
    rgb16.save(d.join("rgb16.png")).unwrap();
    let gray = image::GrayImage::from_fn(64, 64, |x, y| image::Luma([(x * 2 + y) as u8]));
    gray.save(d.join("gray.png")).unwrap();
    let gray_as_rgb = image::RgbImage::from_fn(64, 64, |x, y| {
        let v = gray.get_pixel(x, y)[0];
        image::Rgb([v, v, v])
    });
    gray_as_rgb.save(d.join("gray_rgb.png")).unwrap();

    let base = classify(d, "rgb.png");
    assert_eq!(base.len(), 3);
    // Alpha is dropped and 16 bits are reduced to 8: the very same input as the 8-bit RGB.
    assert_eq!(classify(d, "rgba.png"), base);
    assert_eq!(classify(d, "rgb16.png"), base);
    let g = classify(d, "gray.png");
    assert_eq!(g, classify(d, "gray_rgb.png"));
    assert_ne!(g, base, "different pictures give different logits");

    // Corrupt files: a truncated PNG, a PNG header then junk, a truncated and a junk JPEG,
    // text named .png, an empty file.
    let png = std::fs::read(d.join("rgb.png")).unwrap();
    std::fs::write(d.join("truncated.png"), &png[..png.len() / 2]).unwrap();
    let mut junk = png[..16].to_vec();
    junk.extend((0..500u32).map(|i| (i * 7919 % 251) as u8));
    std::fs::write(d.join("junk.png"), &junk).unwrap();
    let mut jpg = Vec::new();
    rgb.write_to(&mut std::io::Cursor::new(&mut jpg), image::ImageFormat::Jpeg).unwrap();
    std::fs::write(d.join("truncated.jpg"), &jpg[..jpg.len() / 3]).unwrap();
    let mut jjunk = jpg[..4].to_vec();
    jjunk.extend((0..500u32).map(|i| (i * 104729 % 253) as u8));
    std::fs::write(d.join("junk.jpg"), &jjunk).unwrap();
    std::fs::write(d.join("text.png"), b"not an image at all\n").unwrap();
    std::fs::write(d.join("empty.png"), b"").unwrap();
    for f in ["truncated.png", "junk.png", "truncated.jpg", "junk.jpg", "text.png", "empty.png", "missing.png"] {
        let o = steex(d, &["classify", "--classifier", "c.safetensors", "--image", f]);
        assert_refused(&o, f, &[], d, &[]);
        // The same files as a query image of encode, and as a mask.
        let o =
            steex(d, &["encode", "--generator", "g.safetensors", "--image", f, "--mask", "mask.png", "--out", "z.npy"]);
        assert_refused(&o, f, &[], d, &["z.npy"]);
        let o = steex(
            d,
            &["encode", "--generator", "g.safetensors", "--image", "image.npy", "--mask", f, "--out", "z.npy"],
        );
        assert_refused(&o, f, &[], d, &["z.npy"]);
    }

    // Masks must be 8-bit single-channel label maps: 16-bit, RGBA and gray+alpha are refused.
    let mask = image::open(d.join("mask.png")).unwrap().to_luma8();
    image::DynamicImage::ImageLuma8(mask.clone()).to_luma16().save(d.join("mask16.png")).unwrap();
    image::DynamicImage::ImageLuma8(mask.clone()).to_rgba8().save(d.join("mask_rgba.png")).unwrap();
    image::DynamicImage::ImageLuma8(mask).to_luma_alpha8().save(d.join("mask_la.png")).unwrap();
    for f in ["mask16.png", "mask_rgba.png", "mask_la.png"] {
        let o = steex(
            d,
            &["encode", "--generator", "g.safetensors", "--image", "image.npy", "--mask", f, "--out", "z.npy"],
        );
        assert_refused(&o, f, &["8-bit single-channel"], d, &["z.npy"]);
    }
}

#[test]
fn bad_arrays_are_refused_with_what_was_expected() {
    let dir = setup();
    let d = dir.path();
    let codes = steex::io::read_npy(&d.join("codes.npy")).unwrap();
    // float64 and int32 codes of the right shape, an inf, a .npy of random bytes.
    let f64s = ndarray::ArrayD::from_shape_vec(
        ndarray::IxDyn(&codes.shape),
        codes.data.iter().map(|&v| v as f64).collect::<Vec<f64>>(),
    )
    .unwrap();
    ndarray_npy::write_npy(d.join("codes_f64.npy"), &f64s).unwrap();
    let i32s = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&codes.shape), vec![1i32; codes.data.len()]).unwrap();
    ndarray_npy::write_npy(d.join("codes_i32.npy"), &i32s).unwrap();
    let mut inf = codes.clone();
    inf.data[3] = f32::INFINITY;
    steex::io::write_npy(&d.join("codes_inf.npy"), &inf).unwrap();
    let noise: Vec<u8> = (0..300u32).map(|i| (i * 31 % 256) as u8).collect();
    std::fs::write(d.join("codes_random.npy"), &noise).unwrap();
    let mut huge =
        b"\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904,), }"
            .to_vec();
    huge.resize(10 + 0x75, b' ');
    huge.push(b'\n');
    std::fs::write(d.join("codes_huge.npy"), &huge).unwrap();
    // An output file from an earlier run: a refused run must leave it as it was.
    std::fs::write(d.join("out.npy"), b"previous result").unwrap();
    let generate = |codes: &str| {
        steex(
            d,
            &["generate", "--generator", "g.safetensors", "--mask", "mask.png", "--codes", codes, "--out", "out.npy"],
        )
    };
    for (f, needles) in [
        ("codes_f64.npy", vec!["float32"]),
        ("codes_i32.npy", vec!["float32"]),
        ("codes_inf.npy", vec!["not finite"]),
        ("codes_random.npy", vec![]),
        ("codes_huge.npy", vec!["shape"]),
    ] {
        assert_refused(&generate(f), f, &needles, d, &[]);
        assert_eq!(std::fs::read(d.join("out.npy")).unwrap(), b"previous result", "{f}: earlier output touched");
    }
    // Query images as arrays: wrong size, values outside [-1, 1], NaN.
    let image = steex::io::read_npy(&d.join("image.npy")).unwrap();
    let small = steex::io::Array { shape: vec![1, 3, 32, 32], data: image.data[..3 * 32 * 32].to_vec() };
    steex::io::write_npy(&d.join("small.npy"), &small).unwrap();
    let mut bright = image.clone();
    bright.data[5] = 2.5;
    steex::io::write_npy(&d.join("bright.npy"), &bright).unwrap();
    let mut nan = image.clone();
    nan.data[9] = f32::NAN;
    steex::io::write_npy(&d.join("nan_image.npy"), &nan).unwrap();
    for (f, needles) in [
        ("small.npy", vec!["expected [1, 3, 64, 64]"]),
        ("bright.npy", vec!["[-1, 1]"]),
        ("nan_image.npy", vec!["not finite"]),
    ] {
        let o =
            steex(d, &["encode", "--generator", "g.safetensors", "--image", f, "--mask", "mask.png", "--out", "z.npy"]);
        assert_refused(&o, f, &needles, d, &["z.npy"]);
    }
}

#[test]
fn unusable_output_paths_are_refused_and_existing_outputs_replaced_whole() {
    let dir = setup();
    let d = dir.path();
    std::fs::create_dir(d.join("adir.npy")).unwrap();
    std::fs::write(d.join("afile"), b"x").unwrap();
    let generate = |out: &str| {
        steex(
            d,
            &["generate", "--generator", "g.safetensors", "--mask", "mask.png", "--codes", "codes.npy", "--out", out],
        )
    };
    // A directory where a file is expected, a file where a folder is expected, a missing
    // folder, a folder nobody may write in (even root cannot create files in /proc).
    assert_refused(&generate("adir.npy"), "adir.npy", &["directory"], d, &[]);
    assert_refused(&generate("afile/out.npy"), "afile", &[], d, &[]);
    assert_refused(&generate("no/such/out.npy"), "no/such", &["does not exist"], d, &[]);
    assert_refused(&generate("/proc/steex-out.npy"), "/proc", &[], d, &[]);
    let explain = |out: &str| {
        let mut a = vec!["explain", "--generator", "g.safetensors", "--classifier", "c.safetensors"];
        a.extend(["--image", "image.npy", "--mask", "mask.png", "--steps", "1", "--out", out]);
        steex(d, &a)
    };
    assert_refused(&explain("afile"), "afile", &["not a folder"], d, &[]);
    assert_refused(&explain("no/such/res"), "no/such", &["does not exist"], d, &["no"]);
    assert_refused(&explain("/proc/steex-res"), "/proc/steex-res", &[], d, &[]);
    assert_eq!(std::fs::read(d.join("afile")).unwrap(), b"x");

    // An existing output is replaced by a complete new file, never truncated first.
    std::fs::write(d.join("out.npy"), b"previous result").unwrap();
    let o = generate("out.npy");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let a = steex::io::read_npy(&d.join("out.npy")).unwrap();
    assert_eq!(a.shape, vec![1, 3, 64, 64]);
    assert_no_temporaries(d);

    // weights-convert: the output in /proc, a safetensors or an image given as a checkpoint,
    // a checkpoint of another model for each converter.
    let sd = fixture("densenet/checkpoint.tar");
    let sd = sd.to_str().unwrap();
    let o = run_bin(d, "weights-convert", &["state-dict", "--input", sd, "--out", "/proc/x.safetensors"]);
    assert_refused(&o, "/proc/x.safetensors", &[], d, &[]);
    for (input, what) in [("g.safetensors", "not a PyTorch checkpoint"), ("mask.png", "not a PyTorch checkpoint")] {
        let o = run_bin(d, "weights-convert", &["densenet", "--input", input, "--out", "y.safetensors"]);
        assert_refused(&o, input, &[what], d, &["y.safetensors"]);
    }
    let sean = fixture("sean_sq/latest_net_G.pth");
    let rn = fixture("resnet_basic/checkpoint.tar");
    for (cmd, input) in [("densenet", sean.to_str().unwrap()), ("resnet", sd), ("deeplab", rn.to_str().unwrap())] {
        let o = run_bin(d, "weights-convert", &[cmd, "--input", input, "--out", "y.safetensors"]);
        assert_refused(&o, input, &["not a"], d, &["y.safetensors"]);
    }
}

const EXPLAIN: [&str; 9] = [
    "explain",
    "--generator",
    "g.safetensors",
    "--classifier",
    "c.safetensors",
    "--image",
    "image.npy",
    "--mask",
    "mask.png",
];

fn explain_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = EXPLAIN.to_vec();
    a.extend(["--attribute", "smile"]);
    a.extend(extra);
    a
}

/// CPU time (user + system, in clock ticks) the process `pid` has used, from `/proc`; `None`
/// where there is no `/proc` (not Linux).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Starts `steex explain` with many steps, waits until its temporary result folder exists
/// and then until it has spent 0.4 s of CPU time (far more than loading the 64x64 fixtures
/// takes, so it is optimising), sends `signal` and returns the exit status. Both waits are
/// on what the run did, not on the clock, so a loaded or paused machine does not change
/// where the signal lands.
fn kill_mid_run(d: &Path, extra: &[&str], signal: &str) -> std::process::ExitStatus {
    let mut child = steex_command()
        .args(explain_args(&[&["--steps", "100000", "--out", "res"], extra].concat()))
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let tmp_exists =
        || std::fs::read_dir(d).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with(".res.tmp-"));
    while !tmp_exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "the run never created its temporary folder");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    // 40 ticks at Linux's USER_HZ of 100.
    while cpu_ticks(child.id()).is_some_and(|t| t < 40) {
        assert!(t0.elapsed() < Duration::from_secs(300), "the run never got to optimise");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(child.try_wait().unwrap().is_none(), "the run ended before the signal");
    let k = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(k.success());
    child.wait().unwrap()
}

/// Every file of a folder, by name.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_killed_run_leaves_nothing_or_the_complete_previous_result() {
    let dir = setup();
    let d = dir.path();
    // SIGTERM with no earlier result: nothing is left.
    let st = kill_mid_run(d, &[], "-TERM");
    assert!(!st.success());
    assert!(!d.join("res").exists(), "a killed run left a result folder");
    assert_no_temporaries(d);

    // A complete result, then a --force run interrupted by SIGINT: the result is intact.
    let o = steex(d, &explain_args(&["--steps", "2", "--out", "res"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let before = snapshot(&d.join("res"));
    assert!(before.iter().any(|(n, _)| n == "z_final.npy"));
    let st = kill_mid_run(d, &["--force"], "-INT");
    assert!(!st.success());
    assert_eq!(snapshot(&d.join("res")), before, "an interrupted --force run changed the earlier result");
    assert_no_temporaries(d);

    // SIGKILL cannot be handled: the temporary sibling stays, the result is intact, and the
    // next run writing the same folder removes the sibling.
    let st = kill_mid_run(d, &["--force"], "-KILL");
    assert!(!st.success());
    assert_eq!(snapshot(&d.join("res")), before);
    let left = std::fs::read_dir(d)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".res.tmp-"));
    assert_eq!(left.count(), 1, "SIGKILL leaves the temporary folder (no handler can run)");
    let o = steex(d, &explain_args(&["--steps", "1", "--force", "--out", "res"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_no_temporaries(d);
}

#[test]
fn the_same_seed_gives_bit_identical_results_on_cpu() {
    let dir = setup();
    let d = dir.path();
    let outs: Vec<PathBuf> = ["a", "b"]
        .iter()
        .map(|o| {
            let r = steex(d, &explain_args(&["--steps", "3", "--noise", "seed:7", "--out", o]));
            assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
            d.join(o)
        })
        .collect();
    let mut compared = 0;
    for (name, bytes) in snapshot(&outs[0]) {
        if name.ends_with(".npy") || name.ends_with(".png") {
            let other = std::fs::read(outs[1].join(&name)).unwrap();
            assert!(bytes == other, "{name} differs between two runs with the same seed");
            compared += 1;
        }
    }
    assert!(compared >= 8, "only {compared} files compared");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(outs[0].join("result.json")).unwrap()).unwrap();
    assert_eq!(v["status"], "ok", "result.json records the image's status");
    assert!(v["reason"].is_null());
    // The comparison means something: the codes moved, and another seed gives other images.
    let z0 = steex::io::read_npy(&outs[0].join("z_initial.npy")).unwrap();
    let z1 = steex::io::read_npy(&outs[0].join("z_final.npy")).unwrap();
    assert_ne!(z0.data, z1.data, "the optimisation did not move the codes");
    let r = steex(d, &explain_args(&["--steps", "3", "--noise", "seed:8", "--out", "c"]));
    assert!(r.status.success());
    let cf_a = std::fs::read(outs[0].join("counterfactual.npy")).unwrap();
    assert_ne!(cf_a, std::fs::read(d.join("c/counterfactual.npy")).unwrap(), "the seed has no effect");
}
