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

/// Where one channel's `B` planes lie in a `[B, C, H, W]` buffer: channel `ch` of `c`.
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

/// One channel's mean and biased variance (two passes, the planes in cache for the second).
#[inline(always)]
fn channel_stats(xs: &[f32], src: Planes) -> (f32, f32) {
    let hw = src.hw;
    let sum: f64 = src.offsets().map(|o| lane_sum(&xs[o..o + hw], &xs[o..o + hw], |v, _| v) as f64).sum();
    let mean = (sum / src.n()) as f32;
    let dev = |o: usize| lane_sum(&xs[o..o + hw], &xs[o..o + hw], |v, _| (v - mean) * (v - mean)) as f64;
    (mean, (src.offsets().map(dev).sum::<f64>() / src.n()) as f32)
}

/// The forward of one channel, read at `src` and written at `dst`: returns its mean and
/// biased variance (`known` when given, else computed). `(v - mean) * scale + shift` is
/// the form the backward recomputes for the ReLU's mask.
#[inline(always)]
fn forward_channel<const RELU: bool>(
    (xs, src): (&[f32], Planes),
    (out, dst): (Out, Planes),
    gamma: f32,
    beta: f32,
    known: Option<(f32, f32)>,
) -> (f32, f32) {
    let hw = src.hw;
    let (mean, var) = known.unwrap_or_else(|| channel_stats(xs, src));
    let scale = gamma / (var + EPS).sqrt();
    for (o, d) in src.offsets().zip(dst.offsets()) {
        // SAFETY: plane `d` lies within the output's capacity and only this task writes it.
        let dst = unsafe { out.plane(d, hw) };
        for (d, &v) in dst.iter_mut().zip(&xs[o..o + hw]) {
            let t = (v - mean) * scale + beta;
            *d = MaybeUninit::new(if RELU { t.max(0.0) } else { t });
        }
    }
    (mean, var)
}

/// The backward of one channel: the input at `src`, the output gradient at `dst`; writes
/// the input gradient at `src` into `out`, returns `(dgamma, dbeta)`.
#[inline(always)]
fn backward_channel<const RELU: bool>(
    (xs, src): (&[f32], Planes),
    (dys, dst): (&[f32], Planes),
    out: Out,
    (mean, var): (f32, f32),
    gamma: f32,
    beta: f32,
) -> (f32, f32) {
    let hw = src.hw;
    // As the forward computed them, so that the ReLU's mask is the forward's.
    let scale = gamma / (var + EPS).sqrt();
    let rstd = 1.0 / (var + EPS).sqrt();
    let live = |v: f32, g: f32| if !RELU || (v - mean) * scale + beta > 0.0 { g } else { 0.0 };
    let (mut s1, mut s2) = (0f64, 0f64);
    for (o, d) in src.offsets().zip(dst.offsets()) {
        let (a, b) = lane_sum2(&xs[o..o + hw], &dys[d..d + hw], |v, g| {
            let g = live(v, g);
            (g, g * (v - mean))
        });
        (s1, s2) = (s1 + a as f64, s2 + b as f64);
    }
    let (a, k) = ((s1 / src.n()) as f32, (s2 / src.n()) as f32 * rstd * rstd);
    for (o, d) in src.offsets().zip(dst.offsets()) {
        // SAFETY: plane `o` lies within the gradient's capacity and only this task writes it.
        let dx = unsafe { out.plane(o, hw) };
        for ((dx, &v), &g) in dx.iter_mut().zip(&xs[o..o + hw]).zip(&dys[d..d + hw]) {
            *dx = MaybeUninit::new(scale * (live(v, g) - a - (v - mean) * k));
        }
    }
    (s2 as f32 * rstd, s1 as f32)
}

/// The inputs of a (possibly concatenated) batch norm: the features `[B, C_i, H, W]`, f32
/// and contiguous, and for each channel of their concatenation its feature and the
/// channel's planes there.
struct Inputs {
    xs: Vec<FlexTensor>,
    map: Vec<(usize, Planes)>,
    shape: [usize; 4],
}

impl Inputs {
    fn new(xs: Vec<FlexTensor>) -> Self {
        let xs: Vec<FlexTensor> = xs.into_iter().map(contiguous_f32).collect();
        let [b, _, h, w] = xs[0].shape().dims();
        let mut map = Vec::new();
        for (f, x) in xs.iter().enumerate() {
            let [bf, c, hf, wf] = x.shape().dims();
            assert_eq!([bf, hf, wf], [b, h, w], "batch norm of a concatenation: feature {f} of another size");
            map.extend((0..c).map(|ch| (f, Planes { b, c, hw: h * w, ch })));
        }
        Inputs { shape: [b, map.len(), h, w], xs, map }
    }

    /// Channel `ch` of the concatenation as its output (or output gradient) lies.
    fn dst(&self, ch: usize) -> Planes {
        let [b, c, h, w] = self.shape;
        Planes { b, c, hw: h * w, ch }
    }
}

/// The forward of the concatenation of `xs` along the channels, which is not written: the
/// output `[B, C, H, W]` and the statistics `[2, C]` (mean, biased variance). The first
/// `known.len() / 2` channels take their statistics from `known` (`[2, K]`, as returned
/// for them before: the same values that computing them gives).
pub(super) fn forward_cat(
    xs: Vec<FlexTensor>,
    known: &[f32],
    gamma: FlexTensor,
    beta: FlexTensor,
    relu: bool,
) -> (FlexTensor, FlexTensor) {
    let inputs = Inputs::new(xs);
    let (gamma, beta) = (contiguous_f32(gamma), contiguous_f32(beta));
    let (gs, bs) = (gamma.storage::<f32>(), beta.storage::<f32>());
    let c = inputs.shape[1];
    let k = known.len() / 2;
    let len = inputs.shape.iter().product();
    let mut y = Vec::<f32>::with_capacity(len);
    let out = Out(y.as_mut_ptr());
    let storages: Vec<&[f32]> = inputs.xs.iter().map(|x| x.storage::<f32>()).collect();
    let stats: Vec<(f32, f32)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (f, src) = inputs.map[ch];
            let known = (ch < k).then(|| (known[ch], known[k + ch]));
            let (x, dst) = ((storages[f], src), (out, inputs.dst(ch)));
            if relu {
                forward_channel::<true>(x, dst, gs[ch], bs[ch], known)
            } else {
                forward_channel::<false>(x, dst, gs[ch], bs[ch], known)
            }
        })
        .collect();
    // SAFETY: every plane of every channel was written above.
    unsafe { y.set_len(len) };
    let mut st: Vec<f32> = stats.iter().map(|s| s.0).collect();
    st.extend(stats.iter().map(|s| s.1));
    (
        FlexTensor::from_data(TensorData::new(y, Shape::new(inputs.shape))),
        FlexTensor::from_data(TensorData::new(st, Shape::new([2, c]))),
    )
}

/// The backward of [`forward_cat`]: the gradient to each of `xs`, to `gamma` and to `beta`.
pub(super) fn backward_cat(
    xs: Vec<FlexTensor>,
    grad: FlexTensor,
    stats: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    relu: bool,
) -> (Vec<FlexTensor>, FlexTensor, FlexTensor) {
    let inputs = Inputs::new(xs);
    let (grad, stats) = (contiguous_f32(grad), contiguous_f32(stats));
    let (gamma, beta) = (contiguous_f32(gamma), contiguous_f32(beta));
    let c = inputs.shape[1];
    let (dys, st) = (grad.storage::<f32>(), stats.storage::<f32>());
    let (gs, bs) = (gamma.storage::<f32>(), beta.storage::<f32>());
    let storages: Vec<&[f32]> = inputs.xs.iter().map(|x| x.storage::<f32>()).collect();
    let mut dxs: Vec<Vec<f32>> = storages.iter().map(|x| Vec::with_capacity(x.len())).collect();
    let outs: Vec<Out> = dxs.iter_mut().map(|d| Out(d.as_mut_ptr())).collect();
    let sums: Vec<(f32, f32)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (f, src) = inputs.map[ch];
            let (x, dy, s) = ((storages[f], src), (dys, inputs.dst(ch)), (st[ch], st[c + ch]));
            if relu {
                backward_channel::<true>(x, dy, outs[f], s, gs[ch], bs[ch])
            } else {
                backward_channel::<false>(x, dy, outs[f], s, gs[ch], bs[ch])
            }
        })
        .collect();
    let dxs = dxs
        .into_iter()
        .zip(&inputs.xs)
        .map(|(mut dx, x)| {
            // SAFETY: every plane of every channel of this feature was written above.
            unsafe { dx.set_len(x.shape().num_elements()) };
            FlexTensor::from_data(TensorData::new(dx, x.shape()))
        })
        .collect();
    let vec = |f: fn(&(f32, f32)) -> f32| {
        FlexTensor::from_data(TensorData::new(sums.iter().map(f).collect::<Vec<f32>>(), Shape::new([c])))
    };
    (dxs, vec(|s| s.0), vec(|s| s.1))
}

/// The forward: the output `[B, C, H, W]` and the statistics `[2, C]` (mean, biased
/// variance).
pub(super) fn forward(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, relu: bool) -> (FlexTensor, FlexTensor) {
    forward_cat(vec![x], &[], gamma, beta, relu)
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
    let (mut dx, dgamma, dbeta) = backward_cat(vec![x], grad, stats, gamma, beta, relu);
    (dx.remove(0), dgamma, dbeta)
}
