//! Fuzzing of the checkpoint reader (zip and legacy containers, the pickle allow-list guard,
//! the tensor index, the conversions) on stable Rust, seeded from
//! `tests/fixtures/fuzz/checkpoint/`; the inputs it once broke on are replayed from
//! `tests/fixtures/fuzz/regressions/`. See `tests/fuzz_support/mod.rs`.
//!
//! ```sh
//! STEEX_FUZZ_SECS=600 nice -n 19 cargo test --release -p weights-convert --test fuzz_checkpoint -- --nocapture
//! ```

#[path = "../../tests/fuzz_support/mod.rs"]
mod fuzz_support;

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fuzz_support::{FuzzAlloc, Outcome, Rng, Target, corpus, fuzz, mutate, work_dir};
use weights_convert::models::{SeanSize, convert_deeplab, convert_densenet, convert_resnet, convert_sean};
use weights_convert::pickle_guard::{ALLOWED_GLOBALS, GuardError, check_pickle};
use weights_convert::{Checkpoint, convert_state_dict, inspect::Inspection};

#[global_allocator]
static ALLOC: FuzzAlloc = FuzzAlloc;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// Opens, inspects and converts (as every model) a checkpoint. A refusal anywhere must be
/// one line naming the file.
fn read_checkpoint(path: &Path) -> Outcome {
    let ck = Checkpoint::open(path).map_err(|e| e.to_string())?;
    let text = Inspection::of(&ck).to_text();
    assert!(text.contains(&path.display().to_string()));
    let results = [
        convert_state_dict(&ck, None).map(|_| ()),
        convert_densenet(&ck, Some("celeba")).map(|_| ()),
        convert_resnet(&ck, None).map(|_| ()),
        convert_deeplab(&ck, None).map(|_| ()),
        convert_sean(&ck, &SeanSize::Explicit { width: 64, aspect_ratio: 1.0 }).map(|_| ()),
    ];
    let errors: Vec<String> = results.into_iter().filter_map(|r| r.err().map(|e| e.to_string())).collect();
    let path_text = path.display().to_string();
    if let Some(bad) = errors.iter().find(|m| !m.contains(&path_text) || m.trim().lines().count() != 1) {
        return Err(bad.clone());
    }
    if errors.is_empty() { Ok(()) } else { Err(errors.join(" | ")) }
}

/// Known-bad globals, each as the two forms a pickle can name it by: `GLOBAL` (protocol 0-3,
/// `c module\nname\n`) and `STACK_GLOBAL` (protocol 4, two short strings then 0x93). Each is
/// followed by `POP`, so the insertion leaves the stack as it was.
const BAD_GLOBALS: &[(&str, &str)] =
    &[("os", "system"), ("builtins", "eval"), ("subprocess", "Popen"), ("posix", "system"), ("torch", "load")];

fn bad_reference(k: usize) -> (String, Vec<u8>) {
    let (module, name) = BAD_GLOBALS[k % BAD_GLOBALS.len()];
    let mut op = Vec::new();
    if (k / BAD_GLOBALS.len()).is_multiple_of(2) {
        op.push(b'c');
        op.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    } else {
        for s in [module, name] {
            op.push(0x8c);
            op.push(s.len() as u8);
            op.extend_from_slice(s.as_bytes());
        }
        op.push(0x93);
    }
    op.push(b'0');
    (format!("{module}.{name}"), op)
}

/// The allow-list guard alone, on a raw pickle (stream). When it accepts an input, the same
/// input with a known-bad global inserted at an opcode boundary of each of its pickles (just
/// after the protocol header and just before the `STOP`, stack-neutral) must be refused with
/// that global's name: a guard that accepted everything, or stopped looking after the first
/// opcodes, fails here.
fn guard_pickle(path: &Path) -> Outcome {
    let data = std::fs::read(path).unwrap();
    let mut at = 0;
    let mut pickles = Vec::new();
    // Walk consecutive pickles as a legacy file holds them.
    for _ in 0..5 {
        match check_pickle(&data, at) {
            Ok(s) => {
                assert!(s.end > at && s.end <= data.len(), "end {} out of {}..={}", s.end, at, data.len());
                for g in &s.globals {
                    assert!(ALLOWED_GLOBALS.contains(&g.as_str()), "accepted a pickle naming `{g}`");
                }
                pickles.push((at, s.end));
                at = s.end;
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        if at >= data.len() {
            break;
        }
    }
    // Deterministic per input: which bad global, in which form.
    let k = data.iter().fold(0usize, |h, &b| h.wrapping_mul(31).wrapping_add(b as usize));
    for (i, &(start, end)) in pickles.iter().enumerate() {
        let after_proto = if data[start] == 0x80 { start + 2 } else { start };
        for (j, p) in [after_proto, end - 1].into_iter().enumerate() {
            let (global, op) = bad_reference(k.wrapping_add(2 * i + j));
            let mut bad = data.clone();
            bad.splice(p..p, op.iter().copied());
            // The pickles before the i-th are unchanged; the i-th must be refused.
            let mut at = 0;
            let verdict = loop {
                match check_pickle(&bad, at) {
                    Ok(s) if s.end < bad.len() => at = s.end,
                    other => break other,
                }
            };
            match verdict {
                Err(GuardError::ForbiddenGlobal { global: g, .. }) => {
                    assert_eq!(g, global, "{}: pickle {i}, `{global}` inserted at byte {p}", path.display())
                }
                other => panic!(
                    "{}: `{global}` inserted at byte {p} (pickle {i}) was not refused: {other:?}",
                    path.display()
                ),
            }
        }
    }
    Ok(())
}

/// The entries of a zip archive, in order.
fn zip_entries(data: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut zip = zip::ZipArchive::new(Cursor::new(data)).ok()?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut e = zip.by_index(i).ok()?;
        let name = e.name().ok()?.into_owned();
        let mut bytes = Vec::new();
        e.by_ref().take(1 << 20).read_to_end(&mut bytes).ok()?;
        out.push((name, bytes));
    }
    Some(out)
}

fn write_zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        if w.start_file(name.as_str(), opts).is_err() {
            continue; // a duplicate name: the writer refuses it
        }
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Mutates the entries inside a zip checkpoint and writes a valid archive around them, so
/// the mutations reach `data.pkl`, `byteorder`, `version` and the storages.
fn mutate_zip(rng: &mut Rng, data: &[u8]) -> Option<Vec<u8>> {
    let mut entries = zip_entries(data)?;
    if entries.is_empty() {
        return None;
    }
    // The pickle most of the time: it is where the structure is.
    let pkl = entries.iter().position(|(n, _)| n.ends_with(".pkl"));
    let i = match pkl {
        Some(p) if rng.chance(0.6) => p,
        _ => rng.below(entries.len()),
    };
    match rng.below(8) {
        0 => {
            entries.remove(i);
        }
        1 => {
            let (n, d) = entries[i].clone();
            let mut n2 = n.clone().into_bytes();
            n2.push(b'0' + rng.below(10) as u8);
            entries.push((String::from_utf8_lossy(&n2).into_owned(), d));
        }
        2 => {
            let j = rng.below(entries.len());
            let d = entries[j].1.clone();
            entries[i].1 = d;
        }
        3 => {
            let name = entries[i].0.clone();
            let mut b = name.into_bytes();
            let other = b.clone();
            fuzz_support::mutate_once(rng, &mut b, &other);
            entries[i].0 = String::from_utf8_lossy(&b).into_owned();
        }
        _ => {
            let other = entries[rng.below(entries.len())].1.clone();
            entries[i].1 = mutate(rng, &entries[i].1, &other);
        }
    }
    Some(write_zip(&entries))
}

#[test]
fn fuzz_checkpoint_reader() {
    let (seeds, regressions) = corpus(&fixtures(), "checkpoint");
    assert!(seeds.len() >= 10, "seed corpus missing: tests/fixtures/fuzz/checkpoint");
    let target = Target {
        name: "checkpoint",
        ext: "pth",
        run: &read_checkpoint,
        custom: Some(&mutate_zip),
        slow: Duration::from_secs(10),
    };
    fuzz(&target, &seeds, &regressions, &work_dir(env!("CARGO_TARGET_TMPDIR"), "checkpoint"));
}

#[test]
fn fuzz_pickle_guard() {
    let (files, regressions) = corpus(&fixtures(), "checkpoint");
    // Seeds: the legacy files (consecutive pickles) and the pickles inside the zip ones.
    let mut seeds = Vec::new();
    for (name, data) in files {
        if data.first() == Some(&0x80) {
            seeds.push((name, data));
        } else if let Some(entries) = zip_entries(&data) {
            for (entry, bytes) in entries.into_iter().filter(|(n, _)| n.ends_with(".pkl")) {
                seeds.push((format!("{name}:{entry}"), bytes));
            }
        }
    }
    let (_, pickle_regressions) = corpus(&fixtures(), "pickle");
    let _ = regressions;
    let target = Target { name: "pickle", ext: "pkl", run: &guard_pickle, custom: None, slow: Duration::from_secs(2) };
    fuzz(&target, &seeds, &pickle_regressions, &work_dir(env!("CARGO_TARGET_TMPDIR"), "pickle"));
}
