//! Pieces of the `steex` command line that are not library API.

pub mod classify;
pub mod demo;
pub mod device;
pub mod explain;
pub mod explain_dir;
pub mod merge;
pub mod metrics;
pub mod prepare;
pub mod sean;
pub mod segment;
pub mod segment_dir;
pub mod serve;
pub mod train;
pub mod train_generator;

/// Writes to stdout; a closed pipe ends the output quietly instead of panicking.
pub fn print_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
