//! The 3x3 convolution on the Flex (CPU) backend, without im2col.
//!
//! Each image's input is copied once into a zero-padded buffer, 2 rows above and below and
//! 1 column each side, flattened per channel. On that flat layout the 9 taps of an output
//! pixel at flat position `p` read positions `p + (i - 1) (W + 2) + (j - 1)`, so each tap
//! is a plain matrix product of the tap's weights `[M, K]` with a *window* of the padded
//! buffer `[K, N]` (row stride = the buffer's row length), accumulated into the output by
//! the `gemm` crate: 9 products, no column matrix. The output is computed on the padded
//! grid (`H x (W + 2)`) in tiles that stay in cache across the 9 taps, then its 2 border
//! columns are dropped. Work is split into (image, row block, column tile) tasks over
//! rayon; every task runs its products single-threaded.
//!
//! Non-f32 tensors go to burn's own convolution.

use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ConvOptions, ConvTransposeOptions, ModuleOps};
use burn::backend::{DType, Flex, Shape, TensorData, TensorMetadata};
use rayon::prelude::*;

/// Which matrix of the weights `[9, K, C]` a tap multiplies.
#[derive(Clone, Copy)]
pub(super) enum Taps {
    /// Forward: tap `t` is `W_t` (`[K, C]`, rows K).
    Forward,
    /// Gradient to the input: tap `t` is `W_{8-t}^T` (`[C, K]`, rows C).
    InputGrad,
}

pub(super) struct Problem<'a> {
    /// Source `[B, R, H, W]` (R = reduced channels).
    pub(super) src: &'a [f32],
    pub(super) weights: &'a [f32],
    pub(super) bias: Option<&'a [f32]>,
    pub(super) batch: usize,
    /// Output channels.
    pub(super) m: usize,
    /// Reduced channels.
    pub(super) r: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) taps: Taps,
}

fn contiguous_f32(t: FlexTensor) -> Option<FlexTensor> {
    if t.dtype() != DType::F32 {
        return None;
    }
    Some(if t.is_contiguous() && t.layout().start_offset() == 0 { t } else { t.to_contiguous() })
}

/// Runs the kernel on f32 `src` `[B, R, H, W]` with `weights` (`[9, M, R]` for
/// [`Taps::Forward`], `[9, R, M]` for [`Taps::InputGrad`]) -> `[B, M, H, W]`; `None` when a
/// tensor is not f32 (the caller then takes burn's own operation).
fn convolve(src: &FlexTensor, weights: &FlexTensor, bias: Option<&FlexTensor>, taps: Taps) -> Option<FlexTensor> {
    let (src, weights) = (contiguous_f32(src.clone())?, contiguous_f32(weights.clone())?);
    let bias = match bias {
        Some(b) => Some(contiguous_f32(b.clone())?),
        None => None,
    };
    let [b, r, h, w] = src.shape().dims();
    let [_, d1, d2] = weights.shape().dims();
    let m = if matches!(taps, Taps::Forward) { d1 } else { d2 };
    let out = run(&Problem {
        src: src.storage::<f32>(),
        weights: weights.storage::<f32>(),
        bias: bias.as_ref().map(|b| b.storage::<f32>()),
        batch: b,
        m,
        r,
        h,
        w,
        taps,
    });
    Some(FlexTensor::from_data(TensorData::new(out, Shape::new([b, m, h, w]))))
}

/// `x` `[B, C, H, W]`, weights `[9, K, C]`, bias `[K]` -> `[B, K, H, W]`.
pub fn forward(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
    convolve(&x, &weight, Some(&bias), Taps::Forward).unwrap_or_else(|| {
        let w = super::op::to_burn_layout::<Flex>(weight);
        Flex::conv2d(x, w, Some(bias), ConvOptions::new([1, 1], [1, 1], [1, 1], 1))
    })
}

/// `grad` `[B, K, H, W]`, weights `[9, K, C]` -> `[B, C, H, W]`.
pub fn input_grad(grad: FlexTensor, weight: FlexTensor) -> FlexTensor {
    convolve(&grad, &weight, None, Taps::InputGrad).unwrap_or_else(|| {
        let opts = ConvTransposeOptions::new([1, 1], [1, 1], [0, 0], [1, 1], 1);
        Flex::conv_transpose2d(grad, super::op::to_burn_layout::<Flex>(weight), None, opts)
    })
}

/// `grad` `[B, K, H, W]`, input-gradient weights `[9, C, K]` -> `[B, C, H, W]`: the forward
/// kernel on the transposed, tap-reversed weights.
pub fn input_grad_t(grad: FlexTensor, weight_t: FlexTensor) -> FlexTensor {
    convolve(&grad, &weight_t, None, Taps::Forward).unwrap_or_else(|| {
        let w = super::op::to_burn_layout::<Flex>(weight_t);
        Flex::conv2d(grad, w, None, ConvOptions::new([1, 1], [1, 1], [1, 1], 1))
    })
}

/// `x` `[B, C, H, W]`, weights `[9, K, C]` and their Winograd transform `[16, K, C]`, bias
/// `[K]` -> `[B, K, H, W]`: Winograd on the held transform where the shape allows it.
pub fn forward_u(x: FlexTensor, weight: FlexTensor, weight_u: FlexTensor, bias: FlexTensor) -> FlexTensor {
    convolve_u(&x, &weight, &weight_u, Some(&bias), Taps::Forward).unwrap_or_else(|| forward(x, weight, bias))
}

/// `grad` `[B, K, H, W]` through weights `[9, K, C]` and their Winograd transform ->
/// `[B, C, H, W]`.
pub fn input_grad_u(grad: FlexTensor, weight: FlexTensor, weight_u: FlexTensor) -> FlexTensor {
    convolve_u(&grad, &weight, &weight_u, None, Taps::InputGrad).unwrap_or_else(|| input_grad(grad, weight))
}

/// Winograd on the held transform `weight_u`; `None` when the shape or a dtype does not
/// allow it (the caller then takes the direct kernel).
fn convolve_u(
    src: &FlexTensor,
    weights: &FlexTensor,
    weight_u: &FlexTensor,
    bias: Option<&FlexTensor>,
    taps: Taps,
) -> Option<FlexTensor> {
    let (src, weights, u) =
        (contiguous_f32(src.clone())?, contiguous_f32(weights.clone())?, contiguous_f32(weight_u.clone())?);
    let bias = match bias {
        Some(b) => Some(contiguous_f32(b.clone())?),
        None => None,
    };
    let [b, r, h, w] = src.shape().dims();
    let [_, d1, d2] = weights.shape().dims();
    let m = if matches!(taps, Taps::Forward) { d1 } else { d2 };
    let p = Problem {
        src: src.storage::<f32>(),
        weights: weights.storage::<f32>(),
        bias: bias.as_ref().map(|b| b.storage::<f32>()),
        batch: b,
        m,
        r,
        h,
        w,
        taps,
    };
    if !super::winograd::shape_fits(&p) {
        return None;
    }
    let t0 = std::time::Instant::now();
    let out = super::winograd::run(&p, u.storage::<f32>());
    NANOS[matches!(p.taps, Taps::InputGrad) as usize]
        .fetch_add(t0.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
    Some(FlexTensor::from_data(TensorData::new(out, Shape::new([b, m, h, w]))))
}

/// A raw pointer that may cross threads: every task writes its own disjoint part.
#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Rows per block and columns per tile for `batch` products `[m, n]` on `threads` threads:
/// column tiles (multiples of 64, the micro-kernel's height once `gemm` transposes the
/// problem) while there are enough columns, else row blocks (multiples of 16); the task
/// count a multiple of the thread count, the output tile at most ~1 MiB.
fn partition(batch: usize, m: usize, n: usize, threads: usize) -> (usize, usize) {
    const TILE_FLOATS: usize = 262_144;
    let round = |v: usize, q: usize| v.div_ceil(q) * q;
    if n >= 256 * threads || batch >= threads {
        let mut tiles = (m * n).div_ceil(TILE_FLOATS).max(1);
        if batch < threads {
            tiles = round(tiles, threads);
        }
        let cols = round(n.div_ceil(tiles), 64).min(n);
        (m, cols)
    } else {
        let blocks = 2 * threads;
        (round(m.div_ceil(blocks), 16).min(m), n)
    }
}

/// Nanoseconds spent in this kernel (forward, input gradient), for profiling.
pub static NANOS: [std::sync::atomic::AtomicU64; 2] =
    [std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0)];

fn run(p: &Problem) -> Vec<f32> {
    let t0 = std::time::Instant::now();
    let out = if super::winograd::eligible(p) {
        let u = super::winograd::transform_weights(p.weights, p.m * p.r);
        super::winograd::run(p, &u)
    } else {
        run_inner(p)
    };
    NANOS[matches!(p.taps, Taps::InputGrad) as usize]
        .fetch_add(t0.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
    out
}

pub(super) fn run_inner(p: &Problem) -> Vec<f32> {
    let (m, r, h, w) = (p.m, p.r, p.h, p.w);
    let wp = w + 2;
    let rows = h + 4;
    let plane = rows * wp;
    let n = h * wp;
    // The padded source of every image, `[B, R, H + 4, W + 2]`.
    let mut padded = vec![0f32; p.batch * r * plane];
    padded.par_chunks_mut(plane).enumerate().for_each(|(bc, dst)| {
        let src = &p.src[bc * h * w..(bc + 1) * h * w];
        for y in 0..h {
            dst[(y + 2) * wp + 1..(y + 2) * wp + 1 + w].copy_from_slice(&src[y * w..(y + 1) * w]);
        }
    });
    // Tiles: the output tile [rows, cols] stays near 1 MiB so it is reused from cache by
    // the 9 products; rows are split when there are too few tiles to keep the cores busy.
    let (row_block, cols) = partition(p.batch, m, n, rayon::current_num_threads().max(1));
    let col_tiles = n.div_ceil(cols);
    let row_blocks = m.div_ceil(row_block);

    let mut out = vec![0f32; p.batch * m * h * w];
    let out_ptr = SendPtr(out.as_mut_ptr());
    let tasks = p.batch * row_blocks * col_tiles;
    (0..tasks).into_par_iter().for_each_init(Vec::new, |tile: &mut Vec<f32>, task| {
        let img = task / (row_blocks * col_tiles);
        let rb = (task / col_tiles) % row_blocks;
        let ct = task % col_tiles;
        let m0 = rb * row_block;
        let mb = row_block.min(m - m0);
        let n0 = ct * cols;
        let nb = cols.min(n - n0);
        tile.clear();
        tile.resize(mb * nb, 0.0);
        let src = &padded[img * r * plane..(img + 1) * r * plane];
        // Row-major output tiles: measured faster than column-major ones on every trunk
        // shape (celeba, 2 AVX-512 cores, 3 alternating runs each).
        let (dst_cs, dst_rs) = (1isize, nb as isize);
        for t in 0..9 {
            let (i, j) = (t / 3, t % 3);
            // Flat start of this tap's window for output position n0 (output row y sits at
            // padded row y + 2).
            let start = 2 * wp + n0 + i * wp + j - wp - 1;
            let (lhs, lhs_rs, lhs_cs) = match p.taps {
                Taps::Forward => (&p.weights[t * m * r + m0 * r..], r as isize, 1isize),
                Taps::InputGrad => (&p.weights[(8 - t) * m * r + m0..], 1isize, m as isize),
            };
            // SAFETY: the pointers cover [mb, r] (lhs), [r, nb] (rhs, row stride `plane`)
            // and [mb, nb] (dst) inside their buffers, as computed above.
            unsafe {
                gemm::gemm(
                    mb,
                    nb,
                    r,
                    tile.as_mut_ptr(),
                    dst_cs,
                    dst_rs,
                    t > 0,
                    lhs.as_ptr(),
                    lhs_cs,
                    lhs_rs,
                    src[start..].as_ptr(),
                    1,
                    plane as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
        // Drop the border columns, add the bias.
        for (row, ch) in (m0..m0 + mb).enumerate() {
            let b = p.bias.map_or(0.0, |b| b[ch]);
            let dst_base = (img * m + ch) * h * w;
            for (i, q) in (n0..n0 + nb).enumerate() {
                let v = tile[row * dst_rs as usize + i * dst_cs as usize];
                let (y, x) = (q / wp, q % wp);
                if x >= 1 && x <= w {
                    // SAFETY: (img, ch, y, x - 1) is inside `out`, and no other task writes
                    // this (channel, position).
                    unsafe { *out_ptr.get().add(dst_base + y * w + x - 1) = v + b };
                }
            }
        }
    });
    out
}

/// The gradient to the weights: `x` `[B, C, H, W]`, `grad` `[B, K, H, W]` -> `[9, K, C]`;
/// `None` when a tensor is not f32.
///
/// As the forward, on each image's zero-padded input (here 1 row above and below, 1 column
/// each side, and 2 spare values per channel): with the output gradient laid out on the
/// same `H x (W + 2)` grid (zero in the 2 border columns), tap `t`'s gradient
/// `dW_t^T [C, K]` is the product of a window of the padded input `[C, H (W + 2)]` with the
/// laid-out gradient's transpose, accumulated over the images: 9 products of `C` rows and a
/// long reduction, no column matrix. (Border positions read neighbouring pixels, times a
/// zero gradient.) Images are split between the threads, each summing its share
/// single-threaded, then the shares are added.
pub fn weight_grad(x: &FlexTensor, grad: &FlexTensor) -> Option<FlexTensor> {
    let (x, grad) = (contiguous_f32(x.clone())?, contiguous_f32(grad.clone())?);
    let [b, c, h, w] = x.shape().dims();
    let k = grad.shape().dims::<4>()[1];
    let (wp, hw) = (w + 2, h * w);
    let (plane, l) = ((h + 2) * wp + 2, h * wp);
    let (xs, gs) = (x.storage::<f32>(), grad.storage::<f32>());
    let threads = rayon::current_num_threads().max(1);
    let shares = if b >= threads { threads } else { 1 };
    let parallelism = if shares > 1 { gemm::Parallelism::None } else { gemm::Parallelism::Rayon(threads) };
    let transposed = crate::conv2d::flex::pack_outputs(k, c, h * w, 9);
    let partial = |share: usize| {
        let mut acc = vec![0f32; 9 * k * c];
        let mut xpad = vec![0f32; c * plane];
        let mut dyw = vec![0f32; k * l];
        for img in (share..b).step_by(shares) {
            for (ci, dst) in xpad.chunks_exact_mut(plane).enumerate() {
                let src = &xs[(img * c + ci) * hw..][..hw];
                for (y, row) in src.chunks_exact(w).enumerate() {
                    dst[(y + 1) * wp + 1..][..w].copy_from_slice(row);
                }
            }
            for (ki, dst) in dyw.chunks_exact_mut(l).enumerate() {
                let src = &gs[(img * k + ki) * hw..][..hw];
                for (y, row) in src.chunks_exact(w).enumerate() {
                    dst[y * wp..][..w].copy_from_slice(row);
                }
            }
            for t in 0..9 {
                let off = (t / 3) * wp + t % 3;
                // dW_t^T [c, k] at t k c, with strides (1, c), or (k, 1) when summed
                // transposed (`gemm` then packs the gradient [k, l] rather than the wider
                // window [c, l]).
                let dst = if transposed { (k, 1) } else { (1, c) };
                // SAFETY: dW_t^T [c, k] at t k c (strides `dst`); the window [c, l] at `off`
                // (strides plane, 1) ends at (c - 1) plane + off + l - 1 < c plane; the
                // gradient^T [l, k] (strides 1, l).
                unsafe {
                    crate::conv2d::flex::product_on(
                        [c, k, l],
                        (acc[t * k * c..].as_mut_ptr(), dst.0, dst.1),
                        true,
                        (xpad[off..].as_ptr(), plane, 1),
                        (dyw.as_ptr(), 1, l),
                        parallelism,
                    )
                }
            }
        }
        acc
    };
    let mut parts: Vec<Vec<f32>> = (0..shares).into_par_iter().map(partial).collect();
    let mut out = parts.pop().unwrap_or_else(|| vec![0f32; 9 * k * c]);
    for part in parts {
        out.par_iter_mut().zip(part).for_each(|(o, v)| *o += v);
    }
    if transposed {
        // [9, C, K] -> [9, K, C].
        let mut t = vec![0f32; 9 * k * c];
        for (dst, src) in t.chunks_exact_mut(k * c).zip(out.chunks_exact(k * c)) {
            for (ki, row) in dst.chunks_exact_mut(c).enumerate() {
                for (ci, v) in row.iter_mut().enumerate() {
                    *v = src[ci * k + ki];
                }
            }
        }
        out = t;
    }
    Some(FlexTensor::from_data(TensorData::new(out, Shape::new([9, k, c]))))
}
