//! Result folders written atomically, the lock that makes a run their only writer, and the
//! interrupt handler (from `steex-io`).

pub use steex_io::interrupt::{RESULTS_NOTE, install_interrupt_handler, on_interrupt};
pub use steex_io::lock::OutputLock;
pub use steex_io::outdir::OutDir;
