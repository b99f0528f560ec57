//! The Flex (CPU) kernels of [`super::BnTrainBackend`]: one task per channel, which reads
//! the channel's `B` planes for its statistics (sums) and again, from cache, for its output.
//! Sums run in 16 lanes within a plane (vectorised) and in `f64` across planes.

use std::mem::MaybeUninit;

use burn::backend::flex::FlexTensor;
use burn::backend::{Shape, TensorData, TensorMetadata};
use rayon::prelude::*;

use super::EPS;
use crate::affine_relu::contiguous_f32;

const LANES: usize = 16;

/// Where the tasks write their (disjoint) planes of one output.
#[derive(Clone, Copy)]
struct Out(*mut f32);

// SAFETY: each task writes only its own channel's planes.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// # Safety
    /// `off + len` within the allocation, and no other task writing the range.
    unsafe fn plane<'a>(self, off: usize, len: usize) -> &'a mut [MaybeUninit<f32>] {
        // SAFETY: as the caller promises.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(off).cast(), len) }
    }
}

/// `sum f(a[i], b[i])` in `LANES` partial sums.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| f(x, y)).sum();
    for (ca, cb) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += f(ca[i], cb[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Per-channel sums over the channel's `B` planes of `x` (and `other`), in `f64`.
fn over_planes(b: usize, c: usize, hw: usize, ch: usize, mut f: impl FnMut(std::ops::Range<usize>) -> f32) -> f64 {
    (0..b).map(|i| (i * c + ch) * hw).map(|o| f(o..o + hw) as f64).sum()
}

/// The forward: the output `[B, C, H, W]` and the statistics `[2, C]` (mean, biased
/// variance).
pub(super) fn forward(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, relu: bool) -> (FlexTensor, FlexTensor) {
    let (x, gamma, beta) = (contiguous_f32(x), contiguous_f32(gamma), contiguous_f32(beta));
    let shape = x.shape();
    let [b, c, h, w] = shape.dims();
    let (hw, n) = (h * w, (b * h * w).max(1) as f64);
    let (xs, gs, bs) = (x.storage::<f32>(), gamma.storage::<f32>(), beta.storage::<f32>());
    let mut y = Vec::<f32>::with_capacity(xs.len());
    let out = Out(y.as_mut_ptr());
    let stats: Vec<(f32, f32)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let mean = (over_planes(b, c, hw, ch, |r| lane_sum(&xs[r.clone()], &xs[r], |v, _| v)) / n) as f32;
            let dev = |r: std::ops::Range<usize>| lane_sum(&xs[r.clone()], &xs[r], |v, _| (v - mean) * (v - mean));
            let var = (over_planes(b, c, hw, ch, dev) / n) as f32;
            let (scale, shift) = (gs[ch] / (var + EPS).sqrt(), bs[ch]);
            for i in 0..b {
                let o = (i * c + ch) * hw;
                // SAFETY: plane (i, ch) lies within `y`'s capacity and only this task writes it.
                let dst = unsafe { out.plane(o, hw) };
                for (d, &v) in dst.iter_mut().zip(&xs[o..o + hw]) {
                    let t = (v - mean) * scale + shift;
                    *d = MaybeUninit::new(if relu { t.max(0.0) } else { t });
                }
            }
            (mean, var)
        })
        .collect();
    // SAFETY: every plane of every channel was written above.
    unsafe { y.set_len(xs.len()) };
    let mut st: Vec<f32> = stats.iter().map(|s| s.0).collect();
    st.extend(stats.iter().map(|s| s.1));
    (
        FlexTensor::from_data(TensorData::new(y, shape)),
        FlexTensor::from_data(TensorData::new(st, Shape::new([2, c]))),
    )
}

/// The backward: the gradients to `x` `[B, C, H, W]`, `gamma` and `beta` `[C]`.
pub(super) fn backward(
    x: FlexTensor,
    grad: FlexTensor,
    stats: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    relu: bool,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (x, grad, stats) = (contiguous_f32(x), contiguous_f32(grad), contiguous_f32(stats));
    let (gamma, beta) = (contiguous_f32(gamma), contiguous_f32(beta));
    let shape = x.shape();
    let [b, c, h, w] = shape.dims();
    let (hw, n) = (h * w, (b * h * w).max(1) as f64);
    let (xs, dys, st) = (x.storage::<f32>(), grad.storage::<f32>(), stats.storage::<f32>());
    let (gs, bs) = (gamma.storage::<f32>(), beta.storage::<f32>());
    let mut dx = Vec::<f32>::with_capacity(xs.len());
    let out = Out(dx.as_mut_ptr());
    let sums: Vec<(f32, f32)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mean, var) = (st[ch], st[c + ch]);
            // As the forward computed them, so that the ReLU's mask is the forward's.
            let (scale, shift) = (gs[ch] / (var + EPS).sqrt(), bs[ch]);
            let rstd = 1.0 / (var + EPS).sqrt();
            let live = |v: f32, g: f32| if !relu || (v - mean) * scale + shift > 0.0 { g } else { 0.0 };
            let s1 = over_planes(b, c, hw, ch, |r| lane_sum(&xs[r.clone()], &dys[r], live));
            let s2 = over_planes(b, c, hw, ch, |r| lane_sum(&xs[r.clone()], &dys[r], |v, g| live(v, g) * (v - mean)));
            let (a, k) = ((s1 / n) as f32, (s2 / n) as f32 * rstd * rstd);
            for i in 0..b {
                let o = (i * c + ch) * hw;
                // SAFETY: plane (i, ch) lies within `dx`'s capacity and only this task writes it.
                let dst = unsafe { out.plane(o, hw) };
                for ((d, &v), &g) in dst.iter_mut().zip(&xs[o..o + hw]).zip(&dys[o..o + hw]) {
                    *d = MaybeUninit::new(scale * (live(v, g) - a - (v - mean) * k));
                }
            }
            (s2 as f32 * rstd, s1 as f32)
        })
        .collect();
    // SAFETY: every plane of every channel was written above.
    unsafe { dx.set_len(xs.len()) };
    let vec = |f: fn(&(f32, f32)) -> f32| {
        FlexTensor::from_data(TensorData::new(sums.iter().map(f).collect::<Vec<f32>>(), Shape::new([c])))
    };
    (FlexTensor::from_data(TensorData::new(dx, shape)), vec(|s| s.0), vec(|s| s.1))
}
