//! Writes the N(0, 1) values `--noise seed:SEED` draws in one generator forward (the first
//! N; each ACE layer takes the next H x W, in forward order) as a float32 `.npy`, for a
//! reference implementation to replay (`tools/make_fixtures.py` gives them to the reference
//! loop for the seeded-noise setting test).
//!
//! ```sh
//! cargo run --release --example noise_stream -- SEED N OUT.npy
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use steex::io::{Array, write_npy};
use steex::sean::noise::seeded_stream;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [seed, n, out] => {
            seed.parse::<u64>().ok().zip(n.parse::<usize>().ok()).map(|(s, n)| (s, n, PathBuf::from(out)))
        }
        _ => None,
    };
    let Some((seed, n, out)) = parsed else {
        eprintln!("usage: noise_stream SEED N OUT.npy (SEED and N non-negative integers)");
        return ExitCode::from(2);
    };
    match write_npy(&out, &Array { shape: vec![n], data: seeded_stream(seed, n) }) {
        Ok(()) => {
            eprintln!("wrote {n} values of seed {seed} to {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}
