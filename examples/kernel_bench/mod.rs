//! Shared by the kernel examples (`mod kernel_bench;`): the best wall time of a closure, and
//! reproducible random tensors on the CPU backend.
#![allow(dead_code)] // each example uses a part

use std::time::Instant;

use burn::backend::flex::FlexTensor;
use burn::backend::{Shape, TensorData};

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

/// A tensor of `shape` with values in [-0.5, 0.5) from a linear congruential stream.
pub fn random(shape: &[usize], seed: u64) -> FlexTensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    FlexTensor::from_data(TensorData::new(v, Shape::from(shape.to_vec())))
}
