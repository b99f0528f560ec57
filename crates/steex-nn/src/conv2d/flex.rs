//! Any convolution (stride, padding, dilation; one group) on the Flex (CPU) backend as
//! matrix products per kernel tap, in all three directions of training.
//!
//! For tap `t = (i, j)` let `S_t(X)` `[C, P]` be the input pixels that tap reads for the
//! `P = Ho Wo` output pixels (zero where it reads padding). Then
//! - forward: `Y_b = sum_t W_t S_t(X_b)` (`W_t = W[:, :, i, j]`, `[K, C]`);
//! - input gradient: `dX_b = sum_t S_t^T(W_t^T dY_b)` (the product scattered back);
//! - weight gradient: `dW_t = sum_b dY_b S_t(X_b)^T`.
//!
//! burn computes the weight gradient as a convolution whose "batch" is the input channels,
//! one thin matrix-vector product each (packing the whole output gradient every time), and
//! the input gradient as a transposed convolution; both cost several times the forward. Here
//! every direction is a few large `gemm` products. Taps that read only padding (ASPP's
//! dilation 36 on a 32 x 32 map leaves only the centre tap) are skipped: they add zeros. An
//! unpadded stride-1 1x1 convolution reads the image itself, with no copy.
//!
//! Non-f32 tensors and grouped convolutions return `None` (the caller takes burn's own).

use burn::backend::flex::FlexTensor;
use burn::backend::ops::ConvOptions;
use burn::backend::{DType, Shape, TensorData, TensorMetadata};
use rayon::prelude::*;

fn contiguous_f32(t: FlexTensor) -> Option<FlexTensor> {
    if t.dtype() != DType::F32 {
        return None;
    }
    Some(if t.is_contiguous() && t.layout().start_offset() == 0 { t } else { t.to_contiguous() })
}

/// The geometry of one convolution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Geometry {
    pub batch: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub kernel: [usize; 2],
    pub out: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    pub dilation: [usize; 2],
}

impl Geometry {
    /// `x` `[B, C, H, W]`, weights `[K, C, kh, kw]`; `None` for grouped convolutions or an
    /// empty output.
    pub fn new(x: [usize; 4], weight: [usize; 4], options: &ConvOptions<2>) -> Option<Self> {
        let [batch, c, h, w] = x;
        let [k, wc, kh, kw] = weight;
        if options.groups != 1 || wc != c || options.is_asymmetric() {
            return None;
        }
        let pad = options.padding_begin();
        let size = |n: usize, kk: usize, a: usize| {
            let span = options.dilation[a] * (kk - 1) + 1;
            (n + 2 * pad[a]).checked_sub(span).map(|v| v / options.stride[a] + 1)
        };
        let out = [size(h, kh, 0)?, size(w, kw, 1)?];
        (out[0] > 0 && out[1] > 0).then_some(Geometry {
            batch,
            c,
            h,
            w,
            k,
            kernel: [kh, kw],
            out,
            stride: options.stride,
            pad,
            dilation: options.dilation,
        })
    }

    fn pixels(&self) -> usize {
        self.out[0] * self.out[1]
    }

    fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    /// An unpadded stride-1 1x1 convolution: each image is its own `S_0`.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.pad == [0, 0]
    }

    /// The output positions `lo..hi` along axis `a` whose input position for kernel offset
    /// `i` is inside the image.
    fn valid(&self, a: usize, i: usize) -> (usize, usize) {
        let n = [self.h, self.w][a] as isize;
        let (s, off) = (self.stride[a] as isize, (i * self.dilation[a]) as isize - self.pad[a] as isize);
        let o = self.out[a] as isize;
        // o*s + off >= 0  and  o*s + off < n
        let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
        let hi = if n - off <= 0 { 0 } else { ((n - off + s - 1) / s).min(o) };
        (lo.min(o) as usize, hi.max(lo.min(o)) as usize)
    }

    /// Taps that read at least one pixel of the image.
    pub(crate) fn live_taps(&self) -> Vec<usize> {
        (0..self.taps())
            .filter(|&t| {
                let ((y0, y1), (x0, x1)) = (self.valid(0, t / self.kernel[1]), self.valid(1, t % self.kernel[1]));
                y1 > y0 && x1 > x0
            })
            .collect()
    }
}

/// `S_t(img)` `[C, P]` of one image `[C, H, W]` into `dst`.
fn gather(g: &Geometry, img: &[f32], t: usize, dst: &mut [f32]) {
    let plane = g.h * g.w;
    dst.par_chunks_mut(g.pixels()).take(g.c).enumerate().for_each(|(ci, dst)| {
        gather_channel(g, &img[ci * plane..(ci + 1) * plane], t, dst);
    });
}

/// Row `c` of `S_t(img)`: the pixels of channel plane `src` `[H, W]` that tap `t` reads for
/// each output pixel (zero where it reads padding), into `dst` `[P]`.
fn gather_channel(g: &Geometry, src: &[f32], t: usize, dst: &mut [f32]) {
    let (i, j) = (t / g.kernel[1], t % g.kernel[1]);
    let ((y0, y1), (x0, x1)) = (g.valid(0, i), g.valid(1, j));
    let [ho, wo] = g.out;
    let dst = &mut dst[..ho * wo];
    dst.fill(0.0);
    for oy in y0..y1 {
        let y = oy * g.stride[0] + i * g.dilation[0] - g.pad[0];
        let line = &src[y * g.w..(y + 1) * g.w];
        let out = &mut dst[oy * wo..(oy + 1) * wo];
        let first = x0 * g.stride[1] + j * g.dilation[1] - g.pad[1];
        if g.stride[1] == 1 {
            out[x0..x1].copy_from_slice(&line[first..first + x1 - x0]);
        } else {
            for (n, o) in out[x0..x1].iter_mut().enumerate() {
                *o = line[first + n * g.stride[1]];
            }
        }
    }
}

/// The column matrix `[C kh kw, P]` of one image (row `c kh kw + t` is row `c` of `S_t`),
/// whose product with the weights `[K, C kh kw]` (their own layout) is the convolution.
fn im2col(g: &Geometry, img: &[f32], dst: &mut [f32]) {
    let (plane, taps, p) = (g.h * g.w, g.taps(), g.pixels());
    for (row, dst) in dst.chunks_exact_mut(p).enumerate() {
        let (ci, t) = (row / taps, row % taps);
        gather_channel(g, &img[ci * plane..(ci + 1) * plane], t, dst);
    }
}

/// `S_t(img)`: the image itself for a pointwise convolution, else gathered into `buf`.
fn tap_source<'a>(g: &Geometry, img: &'a [f32], t: usize, buf: &'a mut [f32]) -> &'a [f32] {
    if g.is_pointwise() {
        img
    } else {
        gather(g, img, t, buf);
        buf
    }
}

/// `dimg += S_t^T(src)`: `src` `[C, P]` added back at the pixels tap `t` reads.
fn scatter_add(g: &Geometry, src: &[f32], t: usize, dimg: &mut [f32]) {
    let (i, j) = (t / g.kernel[1], t % g.kernel[1]);
    let ((y0, y1), (x0, x1)) = (g.valid(0, i), g.valid(1, j));
    let [ho, wo] = g.out;
    dimg.par_chunks_mut(g.h * g.w).enumerate().for_each(|(ci, dst)| {
        let src = &src[ci * ho * wo..(ci + 1) * ho * wo];
        for oy in y0..y1 {
            let y = oy * g.stride[0] + i * g.dilation[0] - g.pad[0];
            let line = &mut dst[y * g.w..(y + 1) * g.w];
            let from = &src[oy * wo..(oy + 1) * wo];
            let first = x0 * g.stride[1] + j * g.dilation[1] - g.pad[1];
            for (n, v) in from[x0..x1].iter().enumerate() {
                line[first + n * g.stride[1]] += v;
            }
        }
    });
}

/// `dst [m, n] (+)= lhs [m, k] rhs [k, n]`, each given by (pointer, row stride, column
/// stride), on the given threads.
///
/// # Safety
/// Every pointer must cover its matrix under its strides.
pub(crate) unsafe fn product_on(
    [m, n, k]: [usize; 3],
    dst: (*mut f32, usize, usize),
    accumulate: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
    parallelism: gemm::Parallelism,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.2 as isize,
            dst.1 as isize,
            accumulate,
            lhs.0,
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0,
            rhs.2 as isize,
            rhs.1 as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// How the images of a batch are shared: `(images per task, each task's gemm threads)`.
/// With at least as many images as threads, the images are split between the threads and
/// each task's products run single-threaded (thin products of small images then keep every
/// thread busy without a fork per product); otherwise each image's products use every
/// thread. `STEEX_CONV_SPLIT=0`: always the latter.
fn split(batch: usize) -> (usize, gemm::Parallelism) {
    let threads = rayon::current_num_threads().max(1);
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let on = *ON.get_or_init(|| std::env::var("STEEX_CONV_SPLIT").map_or(true, |v| v != "0"));
    if on && batch >= threads {
        (batch.div_ceil(threads), gemm::Parallelism::None)
    } else {
        (1, gemm::Parallelism::Rayon(threads))
    }
}

/// Fewer input channels than this (an RGB stem) make the per-tap products too thin: the
/// forward then multiplies the weights `[K, C kh kw]` with each image's column matrix in one
/// product (DenseNet121's 3 -> 64, 7 x 7, stride 2 stem at 128 x 128, batch 32: 45 ms in
/// burn's convolution, 19 ms here); the gradients stay per tap.
const MIN_CHANNELS: usize = 16;

/// The forward: `x` `[B, C, H, W]`, `weight` `[K, C, kh, kw]` -> `[B, K, Ho, Wo]` (no bias:
/// [`super::conv2d`] adds it).
pub fn forward(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> Option<FlexTensor> {
    let g = Geometry::new(x.shape().dims(), weight.shape().dims(), options)?;
    let (x, weight) = (contiguous_f32(x.clone())?, contiguous_f32(weight.clone())?);
    let (xs, ws) = (x.storage::<f32>(), weight.storage::<f32>());
    let (c, k, p, kk) = (g.c, g.k, g.pixels(), g.taps());
    let columns = g.c < MIN_CHANNELS && !g.is_pointwise();
    let live = g.live_taps();
    let mut out = vec![0f32; g.batch * k * p];
    let (images, parallelism) = split(g.batch);
    out.par_chunks_mut((k * p * images).max(1)).enumerate().for_each(|(n0, dst)| {
        let mut s = match (g.is_pointwise(), columns) {
            (true, _) => Vec::new(),
            (false, true) => vec![0f32; c * kk * p],
            (false, false) => vec![0f32; c * p],
        };
        for (i, dst) in dst.chunks_mut(k * p).enumerate() {
            let b = n0 * images + i;
            let img = &xs[b * c * g.h * g.w..(b + 1) * c * g.h * g.w];
            if columns {
                im2col(&g, img, &mut s);
                // SAFETY: dst [k, p], W [k, c kk] (strides c kk, 1), columns [c kk, p].
                unsafe {
                    product_on(
                        [k, p, c * kk],
                        (dst.as_mut_ptr(), p, 1),
                        false,
                        (ws.as_ptr(), c * kk, 1),
                        (s.as_ptr(), p, 1),
                        parallelism,
                    )
                }
                continue;
            }
            for (n, &t) in live.iter().enumerate() {
                let src = tap_source(&g, img, t, &mut s);
                // SAFETY: dst [k, p], W_t [k, c] at offset t (strides c kk, kk), S_t [c, p].
                unsafe {
                    product_on(
                        [k, p, c],
                        (dst.as_mut_ptr(), p, 1),
                        n > 0,
                        (ws[t..].as_ptr(), c * kk, kk),
                        (src.as_ptr(), p, 1),
                        parallelism,
                    )
                }
            }
        }
    });
    Some(FlexTensor::from_data(TensorData::new(out, Shape::new([g.batch, k, g.out[0], g.out[1]]))))
}

/// The gradient to the input: `grad` `[B, K, Ho, Wo]` through `weight` `[K, C, kh, kw]` ->
/// `[B, C, H, W]` (the shape of `x`).
pub fn input_grad(
    x: &FlexTensor,
    weight: &FlexTensor,
    grad: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<FlexTensor> {
    let g = Geometry::new(x.shape().dims(), weight.shape().dims(), options)?;
    let (weight, grad) = (contiguous_f32(weight.clone())?, contiguous_f32(grad.clone())?);
    if x.dtype() != DType::F32 {
        return None;
    }
    let (ws, gs) = (weight.storage::<f32>(), grad.storage::<f32>());
    let (c, k, p, kk, plane) = (g.c, g.k, g.pixels(), g.taps(), g.h * g.w);
    let mut out = vec![0f32; g.batch * c * plane];
    let live = g.live_taps();
    let (images, parallelism) = split(g.batch);
    out.par_chunks_mut((c * plane * images).max(1)).enumerate().for_each(|(n0, dimgs)| {
        let mut tmp = if g.is_pointwise() { Vec::new() } else { vec![0f32; c * p] };
        if !g.is_pointwise() {
            // Written before the scatter adds into it: adding into fresh pages never written
            // maps the shared zero page on the read and replaces it on the write (two
            // faults and a TLB shootdown per page).
            dimgs.fill(0.0);
        }
        for (i, dimg) in dimgs.chunks_mut(c * plane).enumerate() {
            let b = n0 * images + i;
            let dy = &gs[b * k * p..(b + 1) * k * p];
            for &t in &live {
                let dst = if g.is_pointwise() { dimg.as_mut_ptr() } else { tmp.as_mut_ptr() };
                // SAFETY: dst [c, p], W_t^T [c, k] at offset t (strides kk, c kk), dY_b [k, p].
                unsafe {
                    product_on(
                        [c, p, k],
                        (dst, p, 1),
                        false,
                        (ws[t..].as_ptr(), kk, c * kk),
                        (dy.as_ptr(), p, 1),
                        parallelism,
                    )
                }
                if !g.is_pointwise() {
                    scatter_add(&g, &tmp, t, dimg);
                }
            }
        }
    });
    Some(FlexTensor::from_data(TensorData::new(out, Shape::new([g.batch, c, g.h, g.w]))))
}

/// Whether a weight gradient `[K, C]` summed over `p`-pixel products is summed transposed
/// (see [`weight_grad`]): when `K < C` and the products are long enough (DenseNet121 at
/// batch 32, 2 AVX-512 cores: its 3x3 weight gradients 17.6 -> 14.5 ms at 32 x 32, 1.39 ->
/// 1.13 ms at 8 x 8, the transition at 32 x 32 21.6 -> 15.6 ms; but its 1x1 products of 64
/// pixels and fewer lost, 43 -> 46 ms per step). `STEEX_WGRAD_T=0`: never.
pub(crate) fn pack_outputs(k: usize, c: usize, p: usize, taps: usize) -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    k < c && (taps > 1 || p >= 256) && *ON.get_or_init(|| std::env::var("STEEX_WGRAD_T").map_or(true, |v| v != "0"))
}

/// The gradient to the weights: `x` `[B, C, H, W]`, `grad` `[B, K, Ho, Wo]` ->
/// `[K, C, kh, kw]`. With at least as many images as threads, each thread sums its share of
/// the images single-threaded and the shares are added: `dW` is often too small (DenseNet's
/// `[32, 128, 3, 3]`) for `gemm` to split it between threads, while the reduction over the
/// pixels is long. Otherwise each image's products use every thread.
pub fn weight_grad(
    x: &FlexTensor,
    weight: &FlexTensor,
    grad: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<FlexTensor> {
    let g = Geometry::new(x.shape().dims(), weight.shape().dims(), options)?;
    let (x, grad) = (contiguous_f32(x.clone())?, contiguous_f32(grad.clone())?);
    let (xs, gs) = (x.storage::<f32>(), grad.storage::<f32>());
    let (c, k, p, kk) = (g.c, g.k, g.pixels(), g.taps());
    let threads = rayon::current_num_threads().max(1);
    let shares = if g.batch >= threads { threads } else { 1 };
    let parallelism = if shares > 1 { gemm::Parallelism::None } else { gemm::Parallelism::Rayon(threads) };
    let live = g.live_taps();
    // With fewer output than input channels, the sums are taken as `dW_t^T [C, K]` (K
    // contiguous): `gemm` then packs the output gradient `[K, P]` per image and tap rather
    // than the (wider) input `[C, P]`.
    let transposed = pack_outputs(k, c, p, live.len());
    let partial = |share: usize| {
        let mut acc = vec![0f32; k * c * kk];
        let mut s = if g.is_pointwise() { Vec::new() } else { vec![0f32; c * p] };
        for b in (share..g.batch).step_by(shares) {
            let img = &xs[b * c * g.h * g.w..(b + 1) * c * g.h * g.w];
            let dy = &gs[b * k * p..(b + 1) * k * p];
            for &t in &live {
                let src = tap_source(&g, img, t, &mut s);
                // SAFETY: dW_t [k, c] at offset t (strides c kk, kk), or dW_t^T [c, k] at
                // offset t c k (strides k, 1); dY_b [k, p], S_t [c, p].
                unsafe {
                    if transposed {
                        product_on(
                            [c, k, p],
                            (acc[t * c * k..].as_mut_ptr(), k, 1),
                            true,
                            (src.as_ptr(), p, 1),
                            (dy.as_ptr(), 1, p),
                            parallelism,
                        )
                    } else {
                        product_on(
                            [k, c, p],
                            (acc[t..].as_mut_ptr(), c * kk, kk),
                            true,
                            (dy.as_ptr(), p, 1),
                            (src.as_ptr(), 1, p),
                            parallelism,
                        )
                    }
                }
            }
        }
        acc
    };
    let parts: Vec<Vec<f32>> = (0..shares).into_par_iter().map(partial).collect();
    let out = if transposed {
        // out[ki, ci, t] = sum of the parts' [t, ci, ki].
        let mut out = vec![0f32; k * c * kk];
        out.par_chunks_mut(c * kk).enumerate().for_each(|(ki, row)| {
            for (j, v) in row.iter_mut().enumerate() {
                let (ci, t) = (j / kk, j % kk);
                *v = parts.iter().map(|part| part[(t * c + ci) * k + ki]).sum();
            }
        });
        out
    } else {
        let mut parts = parts;
        let mut out = parts.pop().unwrap_or_else(|| vec![0f32; k * c * kk]);
        for part in parts {
            out.par_iter_mut().zip(part).for_each(|(o, v)| *o += v);
        }
        out
    };
    Some(FlexTensor::from_data(TensorData::new(out, Shape::new([k, c, g.kernel[0], g.kernel[1]]))))
}
