//! Allocator settings for the binaries.
//!
//! An explanation step allocates and frees tensors of a few MiB hundreds of times. glibc
//! serves blocks above its mmap threshold (128 KiB, growing to at most 32 MiB) with fresh
//! mappings, so every step pays page faults and zero-filling for memory it just gave back;
//! with the threshold at its maximum and no trimming, freed blocks are reused instead.
//! Measured on celeba at batch 1: about 10% of the step was page faults before.

/// Keeps freed blocks up to 32 MiB in the process for reuse (glibc on Linux; elsewhere it
/// does nothing). Call it once, at the start of `main`. It changes the process's allocator,
/// so the library never calls it itself.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation thresholds; it is called before the
    // program allocates in earnest and takes no pointers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Serves every block, however large, from the process's heap instead of fresh mappings
/// (glibc on Linux; elsewhere it does nothing), on top of [`tune_allocator`]. A training
/// step of a full-size model allocates activations and gradients above glibc's 32 MiB
/// ceiling for the mmap threshold (DeepLabV3 at 256 x 256, batch 8: 32-64 MiB each), and
/// each fresh mapping is page-faulted and zero-filled again: measured, 19% of the step's
/// samples in `clear_page`, and the step 0.24 -> 0.31 images/s with this. Freed memory is
/// kept for reuse, so call it only for long runs of similar steps (the `train` commands).
/// `STEEX_KLB=0` in the environment turns it off, for comparisons.
pub fn keep_large_blocks() {
    if std::env::var("STEEX_KLB").as_deref() == Ok("0") {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation policy for later requests; it takes
    // no pointers.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
    }
}
