//! The interrupt handler: SIGINT, SIGTERM and SIGHUP remove every temporary being written
//! ([`crate::atomic`]), so an interrupted run leaves either nothing or the complete previous
//! result, and the process exits with status 130.

type Callback = Box<dyn Fn() + Send>;

/// Work to do when the process is interrupted, before the temporaries are removed.
static ON_INTERRUPT: std::sync::Mutex<Vec<Callback>> = std::sync::Mutex::new(Vec::new());

/// Installs (once) the handler: it runs the [`on_interrupt`] callbacks, removes every
/// tracked temporary file and folder, prints `interrupted` (followed by `removed_note` when
/// something was removed) and exits with status 130.
pub fn install_interrupt_handler(removed_note: &'static str) -> Result<(), String> {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            ctrlc::set_handler(move || {
                // Callbacks first: they may wait for a result being written (which needs the
                // temporaries' lock) and write a summary; then the temporaries go, and the
                // lock stays held so no replacement starts before the exit.
                let callbacks = ON_INTERRUPT.lock().unwrap_or_else(|e| e.into_inner());
                for c in callbacks.iter() {
                    c();
                }
                let removed = crate::atomic::remove_tracked_temporaries();
                eprintln!("\ninterrupted{}", if removed > 0 { removed_note } else { "" });
                std::process::exit(130);
            })
            .map_err(|e| e.to_string())
        })
        .clone()
}

/// The note the `steex` commands print when an interruption removed partial outputs.
pub const RESULTS_NOTE: &str = "; partial outputs removed, earlier results untouched";

/// Adds work to do on an interruption (for example writing a summary); installs the handler
/// (with [`RESULTS_NOTE`]) if needed. Callbacks run before the temporaries are removed and
/// the process exits with 130.
pub fn on_interrupt(f: impl Fn() + Send + 'static) -> Result<(), String> {
    install_interrupt_handler(RESULTS_NOTE)?;
    ON_INTERRUPT.lock().unwrap_or_else(|e| e.into_inner()).push(Box::new(f));
    Ok(())
}
