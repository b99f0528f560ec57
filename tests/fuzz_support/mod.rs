//! A small mutation fuzzer that runs on stable Rust inside `cargo test` (shared by
//! `tests/fuzz_readers.rs` and `weights-convert/tests/fuzz_checkpoint.rs`).
//!
//! Each target is a reader called in-process on a file. The loop takes a seed from the
//! committed corpus (`tests/fixtures/fuzz/<target>/`) or from the inputs found so far,
//! applies a few deterministic mutations (bit flips, interesting bytes and integers, byte
//! insertion and deletion, truncation, splicing, number rewriting, and a target's own
//! structure-aware mutation, e.g. of the entries of a zip archive) and runs the target under
//! `catch_unwind`. An input that panics, takes too long, or gives an error that does not name
//! the file is saved under `tests/fixtures/fuzz/regressions/<target>/` style names in the
//! test's scratch folder and fails the test; the committed regressions are replayed first.
//! A distinct error message (digits stripped) counts as new behaviour: such inputs join the
//! corpus, a cheap stand-in for coverage feedback.
//!
//! `STEEX_FUZZ_SECS` (default 3) sets the duration per target, `STEEX_FUZZ_SEED` the seed.
//! A guard allocator (`FuzzAlloc`, installed by each fuzz test binary) aborts with a message
//! when a reader asks for more than [`ALLOC_LIMIT`] bytes at once while fuzzing: the input
//! is left in the work folder as `current.<ext>`.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Largest single allocation a reader may make while fuzzing (inputs are under 1 MB).
pub const ALLOC_LIMIT: usize = 256 << 20;

thread_local! {
    static IN_TARGET: Cell<bool> = const { Cell::new(false) };
    static PANIC_MSG: Cell<Option<String>> = const { Cell::new(None) };
}

/// Forwards to the system allocator; refuses huge allocations made by a fuzz target.
pub struct FuzzAlloc;

unsafe impl GlobalAlloc for FuzzAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn check(size: usize) {
    if size > ALLOC_LIMIT && IN_TARGET.with(|f| f.get()) {
        IN_TARGET.with(|f| f.set(false));
        eprintln!(
            "fuzz: a reader asked for {size} bytes at once (limit {ALLOC_LIMIT}); the input is the \
             `current.*` file of the fuzz work folder"
        );
        std::process::abort();
    }
}

/// xorshift64*: deterministic and dependency-free.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

const INTERESTING_U8: [u8; 12] = [0, 1, 0x7f, 0x80, 0xff, b'\n', b'.', b'(', b'}', b'"', b'0', b'9'];
const INTERESTING_U64: [u64; 14] = [
    0,
    1,
    2,
    7,
    8,
    0x7f,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];
const NUMBERS: [&str; 10] =
    ["0", "1", "-1", "4294967295", "4294967296", "18446744073709551615", "99999999999999999999", "1e308", "65", "3"];

/// A position: half the time near the start or the end (headers, zip directories).
fn pos(rng: &mut Rng, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    match rng.below(4) {
        0 => rng.below(len.min(1024)),
        1 => len - 1 - rng.below(len.min(1024)),
        _ => rng.below(len),
    }
}

/// One generic mutation of `data` (`other` is another corpus entry, for splicing).
pub fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    let len = data.len();
    match rng.below(12) {
        0 if len > 0 => {
            let p = pos(rng, len);
            data[p] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let p = pos(rng, len);
            data[p] = rng.next() as u8;
        }
        2 if len > 0 => {
            let p = pos(rng, len);
            data[p] = INTERESTING_U8[rng.below(INTERESTING_U8.len())];
        }
        3 => {
            let p = pos(rng, len + 1).min(len);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            data.splice(p..p, bytes);
        }
        4 if len > 0 => {
            let p = pos(rng, len);
            let n = (1 + rng.below(64)).min(len - p);
            data.drain(p..p + n);
        }
        5 if len > 0 => {
            let p = rng.below(len);
            data.truncate(p);
        }
        6 if !other.is_empty() => {
            let p = rng.below(len + 1);
            let q = rng.below(other.len());
            data.truncate(p);
            data.extend_from_slice(&other[q..]);
        }
        7 if len > 0 => {
            let width = [1usize, 2, 4, 8][rng.below(4)];
            let p = pos(rng, len);
            let mut v = INTERESTING_U64[rng.below(INTERESTING_U64.len())];
            if rng.chance(0.3) {
                v = (len as u64).wrapping_add(rng.below(3) as u64).wrapping_sub(1);
            }
            let bytes = if rng.chance(0.2) { v.to_be_bytes() } else { v.to_le_bytes() };
            let src = if rng.chance(0.2) { &bytes[8 - width..] } else { &bytes[..width] };
            for (i, &b) in src.iter().enumerate() {
                if p + i < len {
                    data[p + i] = b;
                }
            }
        }
        8 if len > 1 => {
            let a = rng.below(len);
            let n = (1 + rng.below(256)).min(len - a);
            let chunk = data[a..a + n].to_vec();
            let p = rng.below(len + 1);
            data.splice(p..p, chunk);
        }
        9 if !other.is_empty() => {
            let a = rng.below(other.len());
            let n = (1 + rng.below(256)).min(other.len() - a);
            let p = rng.below(len + 1);
            data.splice(p..p, other[a..a + n].iter().copied());
        }
        10 => rewrite_number(rng, data),
        _ if len > 0 => {
            // Swap two bytes.
            let (a, b) = (pos(rng, len), pos(rng, len));
            data.swap(a, b);
        }
        _ => data.push(rng.next() as u8),
    }
}

/// Replaces a run of ASCII digits (a length, a shape, an offset in a text header) with an
/// interesting number.
fn rewrite_number(rng: &mut Rng, data: &mut Vec<u8>) {
    let runs: Vec<(usize, usize)> = {
        let mut v = Vec::new();
        let mut i = 0;
        let limit = data.len().min(64 << 10);
        while i < limit {
            if data[i].is_ascii_digit() {
                let s = i;
                while i < limit && data[i].is_ascii_digit() {
                    i += 1;
                }
                v.push((s, i));
            } else {
                i += 1;
            }
        }
        v
    };
    if runs.is_empty() {
        return;
    }
    let (s, e) = runs[rng.below(runs.len())];
    let n = NUMBERS[rng.below(NUMBERS.len())];
    data.splice(s..e, n.bytes());
}

/// A stack of 1..=4 generic mutations.
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        mutate_once(rng, &mut data, other);
    }
    data
}

/// What a run of a target found.
#[derive(Debug, Default)]
pub struct Report {
    pub iterations: u64,
    pub outcomes: usize,
    pub corpus: usize,
    pub failures: Vec<String>,
}

enum Verdict {
    Problem(String),
    New,
    Seen,
}

/// The result of one call of a target: `Ok(())` accepted, `Err(message)` refused cleanly.
pub type Outcome = Result<(), String>;

/// Reads every file of `dir` (sorted), if it exists.
pub fn read_dir_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn silence_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_TARGET.with(|f| f.get()) {
                let loc = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                PANIC_MSG.with(|m| m.set(Some(format!("{msg}{loc}"))));
            } else {
                default(info);
            }
        }));
    });
}

/// Error messages with the numbers taken out, so `byte 17` and `byte 18` are one outcome.
fn outcome_class(o: &Outcome) -> String {
    match o {
        Ok(()) => "ok".into(),
        Err(m) => m.chars().filter(|c| !c.is_ascii_digit()).take(160).collect(),
    }
}

fn hash(data: &[u8]) -> u64 {
    // FNV-1a.
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The fuzz duration of one target (`STEEX_FUZZ_SECS`, default 3 s).
pub fn duration() -> Duration {
    let secs = std::env::var("STEEX_FUZZ_SECS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(3.0);
    Duration::from_secs_f64(secs)
}

/// A structure-aware mutation of an input (`None` when it does not apply).
pub type Mutation<'a> = &'a dyn Fn(&mut Rng, &[u8]) -> Option<Vec<u8>>;

/// Named inputs: `(file name, bytes)`.
pub type NamedInputs = Vec<(String, Vec<u8>)>;

/// A fuzz target: its name, the file extension of its inputs, and the reader, called on the
/// path of a file holding the input. Every refusal must name that path.
pub struct Target<'a> {
    pub name: &'a str,
    pub ext: &'a str,
    pub run: &'a dyn Fn(&Path) -> Outcome,
    /// A structure-aware mutation (for example of a zip archive's entries), tried on a
    /// third of the iterations; `None` when it does not apply to an input.
    pub custom: Option<Mutation<'a>>,
    /// The longest one call may take before the input counts as a hang.
    pub slow: Duration,
}

/// Runs the committed regressions of `target`, then fuzzes it for [`duration`] from the
/// seeds; panics with the list of failing inputs (saved in the scratch folder `work`).
pub fn fuzz(target: &Target, seeds: &[(String, Vec<u8>)], regressions: &[(String, Vec<u8>)], work: &Path) -> Report {
    silence_panics();
    std::fs::create_dir_all(work).unwrap();
    let current = work.join(format!("current.{}", target.ext));
    let mut report = Report::default();
    let mut seen = BTreeSet::new();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut run_one = |data: &[u8], report: &mut Report| -> Verdict {
        std::fs::write(&current, data).unwrap();
        let path_text = current.display().to_string();
        let t0 = Instant::now();
        IN_TARGET.with(|f| f.set(true));
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&current)));
        IN_TARGET.with(|f| f.set(false));
        let took = t0.elapsed();
        report.iterations += 1;
        match r {
            Err(_) => Verdict::Problem(format!("panic: {}", PANIC_MSG.with(|m| m.take()).unwrap_or_default())),
            Ok(Err(m)) if !m.contains(&path_text) => Verdict::Problem(format!("error does not name the file: {m}")),
            Ok(Err(m)) if m.contains("panicked") || m.trim().lines().count() != 1 => {
                Verdict::Problem(format!("error is not one clear line: {m}"))
            }
            _ if took > target.slow => Verdict::Problem(format!("took {took:?}")),
            Ok(o) => {
                if seen.insert(outcome_class(&o)) {
                    Verdict::New
                } else {
                    Verdict::Seen
                }
            }
        }
    };
    let save = |data: &[u8], why: &str, report: &mut Report| {
        let name = format!("{}-{:016x}.{}", target.name, hash(data), target.ext);
        let path = work.join(&name);
        std::fs::write(&path, data).unwrap();
        eprintln!("fuzz {}: {}: {why}", target.name, path.display());
        report.failures.push(format!("{}: {why}", path.display()));
    };
    for (name, data) in regressions.iter().chain(seeds) {
        match run_one(data, &mut report) {
            Verdict::Problem(p) => save(data, &format!("(from {name}) {p}"), &mut report),
            _ => corpus.push(data.clone()),
        }
    }
    assert!(!corpus.is_empty(), "{}: empty seed corpus", target.name);
    let base = std::env::var("STEEX_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let mut rng = Rng::new(base ^ hash(target.name.as_bytes()));
    let seeds_n = corpus.len();
    let (t0, limit) = (Instant::now(), duration());
    while t0.elapsed() < limit && report.failures.len() < 20 {
        let i = rng.below(corpus.len());
        let j = rng.below(seeds_n);
        let mut data = None;
        if let Some(custom) = target.custom
            && rng.chance(0.33)
        {
            data = custom(&mut rng, &corpus[i]);
        }
        let data = data.unwrap_or_else(|| mutate(&mut rng, &corpus[i], &corpus[j]));
        if data.len() > 4 << 20 {
            continue;
        }
        match run_one(&data, &mut report) {
            Verdict::New if corpus.len() < 4096 => corpus.push(data),
            Verdict::Problem(p) => save(&data, &p, &mut report),
            _ => {}
        }
    }
    let _ = std::fs::remove_file(&current);
    report.outcomes = seen.len();
    report.corpus = corpus.len();
    eprintln!(
        "fuzz {}: {} inputs in {:.1} s ({:.0}/s), {} distinct outcomes, corpus {} ({} seeds), {} failures",
        target.name,
        report.iterations,
        t0.elapsed().as_secs_f64(),
        report.iterations as f64 / t0.elapsed().as_secs_f64().max(1e-9),
        report.outcomes,
        report.corpus,
        seeds_n,
        report.failures.len()
    );
    assert!(report.failures.is_empty(), "fuzz {} found:\n{}", target.name, report.failures.join("\n"));
    report
}

/// The committed seed corpus and regressions of `name` under `fixtures` (`tests/fixtures`).
pub fn corpus(fixtures: &Path, name: &str) -> (NamedInputs, NamedInputs) {
    let seeds = read_dir_files(&fixtures.join("fuzz").join(name));
    let regressions = read_dir_files(&fixtures.join("fuzz/regressions").join(name));
    (seeds, regressions)
}

/// The scratch folder of a fuzz target under the test binary's temporary folder.
pub fn work_dir(tmp: &str, name: &str) -> PathBuf {
    Path::new(tmp).join("fuzz").join(name)
}
