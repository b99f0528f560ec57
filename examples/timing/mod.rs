//! Shared by the kernel examples (`mod timing;`): the best wall time of a closure.

use std::time::Instant;

/// Calls `f` once to warm up, then `reps` times; the fastest call, in seconds.
pub fn best_of<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f();
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}
