//! Result folders written atomically and the interrupt handler (from `steex-io`).

pub use steex_io::interrupt::{RESULTS_NOTE, install_interrupt_handler, on_interrupt};
pub use steex_io::outdir::OutDir;
