//! The Flex (CPU) kernels of [`super::BnTrainBackend`]: one task per channel, which reads
//! the channel's `B` planes for its statistics (sums) and again, from cache, for its output.
//! Sums run in 16 lanes within a plane (vectorised) and in `f64` across planes. (Compiling
//! the loops for AVX-512 measured no faster: the passes are bound by memory.)

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

/// `(sum f(a[i], b[i]).0, sum f(a[i], b[i]).1)` in `LANES` partial sums each.
#[inline(always)]
fn lane_sum2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f32, f32) {
    let (mut acc0, mut acc1) = ([0f32; LANES], [0f32; LANES]);
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (mut t0, mut t1) = (0f32, 0f32);
    for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
        let (u, v) = f(x, y);
        (t0, t1) = (t0 + u, t1 + v);
    }
    for (ca, cb) in ca.zip(cb) {
        for i in 0..LANES {
            let (u, v) = f(ca[i], cb[i]);
            acc0[i] += u;
            acc1[i] += v;
        }
    }
    (acc0.iter().sum::<f32>() + t0, acc1.iter().sum::<f32>() + t1)
}

/// One task's view of a `[B, C, H, W]` tensor: channel `ch`'s planes.
#[derive(Clone, Copy)]
struct Planes {
    b: usize,
    c: usize,
    hw: usize,
    ch: usize,
}

impl Planes {
    /// The offsets of the channel's planes.
    fn offsets(self) -> impl Iterator<Item = usize> {
        (0..self.b).map(move |i| (i * self.c + self.ch) * self.hw)
    }

    /// Values per channel.
    fn n(self) -> f64 {
        (self.b * self.hw).max(1) as f64
    }
}

/// The forward of one channel: writes its planes of the output, returns its mean and biased
/// variance. `(v - mean) * scale + shift` is the form the backward recomputes for the
/// ReLU's mask.
#[inline(always)]
fn forward_channel<const RELU: bool>(xs: &[f32], out: Out, p: Planes, gamma: f32, beta: f32) -> (f32, f32) {
    let hw = p.hw;
    let sum: f64 = p.offsets().map(|o| lane_sum(&xs[o..o + hw], &xs[o..o + hw], |v, _| v) as f64).sum();
    let mean = (sum / p.n()) as f32;
    let dev = |o: usize| lane_sum(&xs[o..o + hw], &xs[o..o + hw], |v, _| (v - mean) * (v - mean)) as f64;
    let var = (p.offsets().map(dev).sum::<f64>() / p.n()) as f32;
    let scale = gamma / (var + EPS).sqrt();
    for o in p.offsets() {
        // SAFETY: plane `o` lies within the output's capacity and only this task writes it.
        let dst = unsafe { out.plane(o, hw) };
        for (d, &v) in dst.iter_mut().zip(&xs[o..o + hw]) {
            let t = (v - mean) * scale + beta;
            *d = MaybeUninit::new(if RELU { t.max(0.0) } else { t });
        }
    }
    (mean, var)
}

/// The backward of one channel: writes its planes of `dx`, returns `(dgamma, dbeta)`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_channel<const RELU: bool>(
    xs: &[f32],
    dys: &[f32],
    out: Out,
    p: Planes,
    (mean, var): (f32, f32),
    gamma: f32,
    beta: f32,
) -> (f32, f32) {
    let hw = p.hw;
    // As the forward computed them, so that the ReLU's mask is the forward's.
    let scale = gamma / (var + EPS).sqrt();
    let rstd = 1.0 / (var + EPS).sqrt();
    let live = |v: f32, g: f32| if !RELU || (v - mean) * scale + beta > 0.0 { g } else { 0.0 };
    let (mut s1, mut s2) = (0f64, 0f64);
    for o in p.offsets() {
        let (a, b) = lane_sum2(&xs[o..o + hw], &dys[o..o + hw], |v, g| {
            let g = live(v, g);
            (g, g * (v - mean))
        });
        (s1, s2) = (s1 + a as f64, s2 + b as f64);
    }
    let (a, k) = ((s1 / p.n()) as f32, (s2 / p.n()) as f32 * rstd * rstd);
    for o in p.offsets() {
        // SAFETY: plane `o` lies within `dx`'s capacity and only this task writes it.
        let dst = unsafe { out.plane(o, hw) };
        for ((d, &v), &g) in dst.iter_mut().zip(&xs[o..o + hw]).zip(&dys[o..o + hw]) {
            *d = MaybeUninit::new(scale * (live(v, g) - a - (v - mean) * k));
        }
    }
    (s2 as f32 * rstd, s1 as f32)
}

/// The forward: the output `[B, C, H, W]` and the statistics `[2, C]` (mean, biased
/// variance).
pub(super) fn forward(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, relu: bool) -> (FlexTensor, FlexTensor) {
    let (x, gamma, beta) = (contiguous_f32(x), contiguous_f32(gamma), contiguous_f32(beta));
    let shape = x.shape();
    let [b, c, h, w] = shape.dims();
    let (xs, gs, bs) = (x.storage::<f32>(), gamma.storage::<f32>(), beta.storage::<f32>());
    let mut y = Vec::<f32>::with_capacity(xs.len());
    let out = Out(y.as_mut_ptr());
    let stats: Vec<(f32, f32)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let p = Planes { b, c, hw: h * w, ch };
            if relu {
                forward_channel::<true>(xs, out, p, gs[ch], bs[ch])
            } else {
                forward_channel::<false>(xs, out, p, gs[ch], bs[ch])
            }
        })
        .collect();
    // SAFETY: every plane of every channel was written above.
    unsafe { y.set_len(xs.len()) };
    let mut st: Vec<f32> = stats.iter().map(|s| s.0).collect();
    st.extend(stats.iter().map(|s| s.1));
    (FlexTensor::from_data(TensorData::new(y, shape)), FlexTensor::from_data(TensorData::new(st, Shape::new([2, c]))))
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
    let (xs, dys, st) = (x.storage::<f32>(), grad.storage::<f32>(), stats.storage::<f32>());
    let (gs, bs) = (gamma.storage::<f32>(), beta.storage::<f32>());
    let mut dx = Vec::<f32>::with_capacity(xs.len());
    let out = Out(dx.as_mut_ptr());
    let sums: Vec<(f32, f32)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (p, s) = (Planes { b, c, hw: h * w, ch }, (st[ch], st[c + ch]));
            if relu {
                backward_channel::<true>(xs, dys, out, p, s, gs[ch], bs[ch])
            } else {
                backward_channel::<false>(xs, dys, out, p, s, gs[ch], bs[ch])
            }
        })
        .collect();
    // SAFETY: every plane of every channel was written above.
    unsafe { dx.set_len(xs.len()) };
    let vec = |f: fn(&(f32, f32)) -> f32| {
        FlexTensor::from_data(TensorData::new(sums.iter().map(f).collect::<Vec<f32>>(), Shape::new([c])))
    };
    (FlexTensor::from_data(TensorData::new(dx, shape)), vec(|s| s.0), vec(|s| s.1))
}
