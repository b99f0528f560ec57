//! Fuzzing of the `.npy` reader (codes, images) and of the safetensors weights reader with
//! the model loaders behind it, on stable Rust, seeded from `tests/fixtures/fuzz/npy/` and
//! `tests/fixtures/fuzz/safetensors/`; the inputs they once broke on are replayed from
//! `tests/fixtures/fuzz/regressions/`. See `tests/fuzz_support/mod.rs`.
//!
//! ```sh
//! STEEX_FUZZ_SECS=600 nice -n 19 cargo test --release --test fuzz_readers -- --nocapture
//! ```

mod fuzz_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fuzz_support::{FuzzAlloc, Outcome, Rng, Target, corpus, fuzz, mutate};

#[global_allocator]
static ALLOC: FuzzAlloc = FuzzAlloc;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn work(name: &str) -> PathBuf {
    fuzz_support::work_dir(env!("CARGO_TARGET_TMPDIR"), name)
}

/// `read_npy`, then the image and codes checks built on it.
fn read_npy(path: &Path) -> Outcome {
    let a = steex::io::read_npy(path).map_err(|e| e.to_string())?;
    assert_eq!(a.shape.iter().product::<usize>(), a.data.len(), "shape and data disagree");
    assert!(a.data.iter().all(|v| v.is_finite()));
    steex::io::image_size(path).map_err(|e| e.to_string())?;
    steex::io::read_image_native(path).map_err(|e| e.to_string())?;
    Ok(())
}

/// The weights reader and every model loader on a safetensors file.
fn read_weights(path: &Path) -> Outcome {
    let device = burn::tensor::Device::flex();
    let w = steex::io::read_weights(path).map_err(|e| e.to_string())?;
    for name in w.names() {
        let shape = w.shape(&name).unwrap();
        let _ = w.values(&name, &shape);
    }
    let results = [
        steex::io::load_classifier(path, &device).map(|_| ()),
        steex::io::load_generator(path, &device).map(|_| ()),
        steex::io::load_segmenter(path, &device).map(|_| ()),
    ];
    let errors: Vec<String> = results.into_iter().filter_map(|r| r.err().map(|e| e.to_string())).collect();
    let path_text = path.display().to_string();
    if let Some(bad) = errors.iter().find(|m| !m.contains(&path_text) || m.trim().lines().count() != 1) {
        return Err(bad.clone());
    }
    if errors.is_empty() { Ok(()) } else { Err(errors.join(" | ")) }
}

/// Mutates the JSON header of a safetensors file most of the time (where the structure is)
/// and rewrites the length prefix to match, so the mutation reaches the parser.
fn mutate_header(rng: &mut Rng, data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 8 {
        return None;
    }
    let n = u64::from_le_bytes(data[..8].try_into().unwrap()) as usize;
    let end = 8usize.checked_add(n).filter(|&e| e <= data.len())?;
    let header = &data[8..end];
    let new = mutate(rng, header, header);
    let mut out = (new.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&new);
    out.extend_from_slice(&data[end..]);
    Some(out)
}

#[test]
fn fuzz_npy_reader() {
    let (seeds, regressions) = corpus(&fixtures(), "npy");
    assert!(seeds.len() >= 10, "seed corpus missing: tests/fixtures/fuzz/npy");
    let target = Target { name: "npy", ext: "npy", run: &read_npy, custom: None, slow: Duration::from_secs(2) };
    fuzz(&target, &seeds, &regressions, &work("npy"));
}

#[test]
fn fuzz_safetensors_reader() {
    let (seeds, regressions) = corpus(&fixtures(), "safetensors");
    assert!(seeds.len() >= 3, "seed corpus missing: tests/fixtures/fuzz/safetensors");
    let target = Target {
        name: "safetensors",
        ext: "safetensors",
        run: &read_weights,
        custom: Some(&mutate_header),
        slow: Duration::from_secs(10),
    };
    fuzz(&target, &seeds, &regressions, &work("safetensors"));
}
