//! Max pooling (`nn.MaxPool2d(k, s, p)`) and 2x2 average pooling (`nn.AvgPool2d(2, 2)`) as
//! one CPU pass each way. burn's CPU pools go through its 3-d pooling: DenseNet121's stem
//! pool (3x3, stride 2, padding 1 on `[32, 64, 64, 64]`) took 40 ms forward and 47 ms
//! backward, its three transition pools 30 ms both ways, per training step; here, a few ms.
//! Other backends take burn's pools.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, Dispatch, DispatchDevice, Flex, IntDType, Shape, TensorData, TensorMetadata};
use burn::backend::{backend_extension, flex::FlexTensor};
use burn::nn::PaddingConfig2d;
use burn::nn::pool::{AvgPool2d, MaxPool2d};
use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::affine_relu::contiguous_f32;

/// A square max pool's window: kernel, stride, padding (dilation 1, floor mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Window {
    /// The output size along an axis of `n` pixels.
    fn out(self, n: usize) -> usize {
        (n + 2 * self.padding).saturating_sub(self.kernel) / self.stride + 1
    }

    /// The window of `pool` when it is square with symmetric padding, dilation 1 and floor
    /// mode (what [`max_pool2d`] computes itself).
    fn of(pool: &MaxPool2d) -> Option<Self> {
        let [k0, k1] = pool.kernel_size;
        let [s0, s1] = pool.stride;
        let padding = match &pool.padding {
            PaddingConfig2d::Valid => 0,
            PaddingConfig2d::Explicit(a, b, c, d) if a == b && b == c && c == d => *a,
            _ => return None,
        };
        let plain = k0 == k1 && s0 == s1 && pool.dilation == [1, 1] && !pool.ceil_mode && padding < k0;
        plain.then_some(Window { kernel: k0, stride: s0, padding })
    }
}

/// `pool.forward(x)`: on the CPU one pass each way (see the module docs), elsewhere burn's.
///
/// # Shapes
/// - `x`: `[B, C, H, W]`
/// - output: `[B, C, Ho, Wo]`, `Ho = (H + 2 p - k) / s + 1`
pub fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let flex = matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_));
    match Window::of(pool) {
        Some(w) if flex && x.dims()[2] + 2 * w.padding >= w.kernel && x.dims()[3] + 2 * w.padding >= w.kernel => {
            Tensor::from_dispatch(<Dispatch as PoolBackend>::max_pool(x.into_dispatch(), w))
        }
        _ => pool.forward(x),
    }
}

/// `nn.AvgPool2d(2, 2)`: each output the mean of a 2x2 block (an odd last row or column
/// dropped); on the CPU one pass each way, elsewhere burn's `pool`.
///
/// # Shapes
/// - `x`: `[B, C, H, W]`
/// - output: `[B, C, H / 2, W / 2]`
pub fn avg_pool2x2(pool: &AvgPool2d, x: Tensor<4>) -> Tensor<4> {
    let flex = matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_));
    let unpadded = matches!(pool.padding, PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0));
    let plain = pool.kernel_size == [2, 2] && pool.stride == [2, 2] && unpadded && !pool.ceil_mode;
    if flex && plain && x.dims()[2] >= 2 && x.dims()[3] >= 2 {
        Tensor::from_dispatch(<Dispatch as PoolBackend>::avg_pool2x2(x.into_dispatch()))
    } else {
        pool.forward(x)
    }
}

/// The operations; [`max_pool2d`] and [`avg_pool2x2`] route only Flex tensors (with or
/// without autodiff) here. The defaults are burn's pools.
#[backend_extension(Flex, Autodiff, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait PoolBackend: Backend {
    /// `x` `[B, C, H, W]` -> the maxima `[B, C, Ho, Wo]`.
    fn max_pool(x: FloatTensor<Self>, w: Window) -> FloatTensor<Self> {
        Self::max_pool_indexed(x, w).0
    }

    /// The maxima and, for each, its position in its plane (`y W + x`).
    fn max_pool_indexed(x: FloatTensor<Self>, w: Window) -> (FloatTensor<Self>, IntTensor<Self>) {
        let (k, s, p) = ([w.kernel; 2], [w.stride; 2], [w.padding; 2]);
        let r = Self::max_pool2d_with_indices(x, k, s, p, [1, 1], false, IntDType::I64);
        (r.output, r.indices)
    }

    /// The gradient to `x` (of `shape`): each output's gradient added at its maximum.
    fn max_pool_grad(shape: Shape, grad: FloatTensor<Self>, indices: IntTensor<Self>, w: Window) -> FloatTensor<Self> {
        let (k, s, p) = ([w.kernel; 2], [w.stride; 2], [w.padding; 2]);
        let device = grad.device();
        let x = Self::float_zeros(shape, &device, grad.dtype().into());
        Self::max_pool2d_with_indices_backward(x, k, s, p, [1, 1], false, grad, indices).x_grad
    }

    /// `x` `[B, C, H, W]` -> the 2x2 means `[B, C, H / 2, W / 2]`.
    fn avg_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::avg_pool2d(x, [2, 2], [2, 2], [0, 0], true, false)
    }

    /// The gradient to `x` (of `shape`): a quarter of each output's gradient on its block.
    fn avg_pool2x2_grad(shape: Shape, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let device = grad.device();
        let x = Self::float_zeros(shape, &device, grad.dtype().into());
        Self::avg_pool2d_backward(x, grad, [2, 2], [2, 2], [0, 0], true, false)
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl PoolBackend for burn::backend::Cube {}

/// The maxima of one plane `src` `[h, w]` into `out` `[ho, wo]`, their positions into `at`.
/// As PyTorch's CPU kernel: a value replaces the maximum when it is greater or NaN, visiting
/// each window in row-major order (the first of equal maxima wins, the last NaN). The loops
/// run over a whole output row per kernel tap (each output still sees its window's values
/// in the same order), on the row split into its `stride` phases so that a tap reads
/// consecutive values, with branch-free selects (vectorised).
fn max_plane(src: &[f32], [h, w]: [usize; 2], win: Window, out: &mut [f32], at: &mut [i32]) {
    let wo = win.out(w);
    let (k, s, p) = (win.kernel, win.stride, win.padding);
    // Output columns whose tap `kx` reads inside the row (ox s + kx - p in 0..w).
    let cols = |kx: usize| {
        let lo = p.saturating_sub(kx).div_ceil(s);
        let hi = if w + p > kx { ((w + p - kx - 1) / s + 1).min(wo) } else { 0 };
        (lo.min(hi), hi)
    };
    let phase_len = w.div_ceil(s);
    let mut phases = vec![0f32; s * phase_len];
    for (oy, (out, at)) in out.chunks_exact_mut(wo.max(1)).zip(at.chunks_exact_mut(wo.max(1))).enumerate() {
        let (ya, yb) = ((oy * s).saturating_sub(p), (oy * s + k - p).min(h));
        for (ox, (o, a)) in out.iter_mut().zip(at.iter_mut()).enumerate() {
            *o = f32::NEG_INFINITY;
            *a = (ya * w + (ox * s).saturating_sub(p)) as i32;
        }
        for y in ya..yb {
            let row = &src[y * w..(y + 1) * w];
            if s == 2 {
                let (even, odd) = phases.split_at_mut(phase_len);
                for ((pair, e), o) in row.chunks_exact(2).zip(even.iter_mut()).zip(odd.iter_mut()) {
                    (*e, *o) = (pair[0], pair[1]);
                }
                if w % 2 == 1 {
                    even[phase_len - 1] = row[w - 1];
                }
            } else {
                for (r, phase) in phases.chunks_exact_mut(phase_len).enumerate() {
                    for (d, &v) in phase.iter_mut().zip(row[r.min(w)..].iter().step_by(s)) {
                        *d = v;
                    }
                }
            }
            for kx in 0..k {
                let (lo, hi) = cols(kx);
                if lo >= hi {
                    continue;
                }
                // x = ox s + kx - p = (ox + q) s + r.
                let first = lo * s + kx - p;
                let (q0, r) = (first / s, first % s);
                let vals = &phases[r * phase_len + q0..][..hi - lo];
                let base = (y * w + first) as i32;
                let (out, at) = (&mut out[lo..hi], &mut at[lo..hi]);
                for (n, ((o, a), &v)) in out.iter_mut().zip(at.iter_mut()).zip(vals).enumerate() {
                    let take = (v > *o) | v.is_nan();
                    *o = if take { v } else { *o };
                    *a = if take { base + (n * s) as i32 } else { *a };
                }
            }
        }
    }
}

/// `dst` filled with zeros, as initialised values.
fn zeroed(dst: &mut [std::mem::MaybeUninit<f32>]) -> &mut [f32] {
    for d in dst.iter_mut() {
        d.write(0.0);
    }
    // SAFETY: every element was just initialised; `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { &mut *(dst as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) }
}

/// Every output the sum of a 2x2 window (stride 2; an odd last row or column is left out)
/// times `scale`, one plane per task, written into uninitialised capacity (no zeroing pass):
/// the 2x2 average pool (`scale` 1/4) and the gradient of the nearest 2x upsampling (`scale`
/// 1, [`crate::upsample`]).
pub(crate) fn sum_2x2(x: FlexTensor, scale: f32) -> FlexTensor {
    let x = contiguous_f32(x);
    let [b, c, h, w] = x.shape().dims();
    let (ho, wo) = (h / 2, w / 2);
    let xs = x.storage::<f32>();
    let n = b * c * ho * wo;
    let mut out = Vec::<f32>::with_capacity(n);
    out.spare_capacity_mut()[..n].par_chunks_mut((ho * wo).max(1)).enumerate().for_each(|(p, o)| {
        let src = &xs[p * h * w..(p + 1) * h * w];
        for (i, row) in o.chunks_exact_mut(wo.max(1)).enumerate() {
            let (top, bottom) = (&src[2 * i * w..(2 * i + 1) * w], &src[(2 * i + 1) * w..(2 * i + 2) * w]);
            for (j, d) in row.iter_mut().enumerate() {
                d.write((top[2 * j] + top[2 * j + 1] + bottom[2 * j] + bottom[2 * j + 1]) * scale);
            }
        }
    });
    // SAFETY: the planes tile the `n` outputs and every row of every plane was written.
    unsafe { out.set_len(n) };
    FlexTensor::from_data(TensorData::new(out, Shape::new([b, c, ho, wo])))
}

impl PoolBackend for Flex {
    fn max_pool(x: FloatTensor<Self>, w: Window) -> FloatTensor<Self> {
        Self::max_pool_indexed(x, w).0
    }

    fn max_pool_indexed(x: FloatTensor<Self>, win: Window) -> (FloatTensor<Self>, IntTensor<Self>) {
        let x = contiguous_f32(x);
        let [b, c, h, w] = x.shape().dims();
        let (ho, wo) = (win.out(h), win.out(w));
        let xs = x.storage::<f32>();
        let mut out = vec![0f32; b * c * ho * wo];
        let mut at = vec![0i32; b * c * ho * wo];
        out.par_chunks_mut((ho * wo).max(1))
            .zip(at.par_chunks_mut((ho * wo).max(1)))
            .enumerate()
            .for_each(|(p, (out, at))| max_plane(&xs[p * h * w..(p + 1) * h * w], [h, w], win, out, at));
        let shape = Shape::new([b, c, ho, wo]);
        (FlexTensor::from_data(TensorData::new(out, shape.clone())), FlexTensor::from_data(TensorData::new(at, shape)))
    }

    fn max_pool_grad(shape: Shape, grad: FloatTensor<Self>, indices: IntTensor<Self>, _w: Window) -> FloatTensor<Self> {
        let grad = contiguous_f32(grad);
        let [b, c, h, w] = shape.dims();
        let [_, _, ho, wo] = grad.shape().dims();
        let (gs, at) = (grad.storage::<f32>(), indices.storage::<i32>());
        // Zeroed by writing, plane by plane, rather than by `calloc`: adding into fresh
        // pages that were never written maps the shared zero page on the read and replaces
        // it on the write (two faults and a TLB shootdown per page: 50 ms against 5 ms for
        // DenseNet's stem pool at batch 32, 2 cores in a VM).
        let n = b * c * h * w;
        let mut dx = Vec::<f32>::with_capacity(n);
        dx.spare_capacity_mut()[..n].par_chunks_mut((h * w).max(1)).enumerate().for_each(|(p, dst)| {
            let dst = zeroed(dst);
            let range = p * ho * wo..(p + 1) * ho * wo;
            for (&g, &i) in gs[range.clone()].iter().zip(&at[range]) {
                dst[i as usize] += g;
            }
        });
        // SAFETY: every plane was written (zeroed) above.
        unsafe { dx.set_len(n) };
        FlexTensor::from_data(TensorData::new(dx, shape))
    }

    fn avg_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        sum_2x2(x, 0.25)
    }

    fn avg_pool2x2_grad(shape: Shape, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let grad = contiguous_f32(grad);
        let [b, c, h, w] = shape.dims();
        let [_, _, ho, wo] = grad.shape().dims();
        let gs = grad.storage::<f32>();
        let mut dx = vec![0f32; b * c * h * w];
        dx.par_chunks_mut((h * w).max(1)).enumerate().for_each(|(p, dst)| {
            let src = &gs[p * ho * wo..(p + 1) * ho * wo];
            for (i, row) in src.chunks_exact(wo.max(1)).enumerate() {
                let (top, bottom) = dst[2 * i * w..(2 * i + 2) * w].split_at_mut(w);
                for (j, &g) in row.iter().enumerate() {
                    let q = g * 0.25;
                    (top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]) = (q, q, q, q);
                }
            }
        });
        FlexTensor::from_data(TensorData::new(dx, shape))
    }
}

#[derive(Debug)]
struct MaxPoolStep;

impl<B: Backend + PoolBackend> Backward<B, 1> for MaxPoolStep {
    /// The input's shape, the maxima's positions, the window.
    type State = (Shape, IntTensor<B>, Window);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (shape, indices, w) = ops.state;
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::max_pool_grad(shape, grad, indices, w));
        }
    }
}

#[derive(Debug)]
struct AvgPoolStep;

impl<B: Backend + PoolBackend> Backward<B, 1> for AvgPoolStep {
    /// The input's shape.
    type State = Shape;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::avg_pool2x2_grad(ops.state, grad));
        }
    }
}

impl<B: Backend + PoolBackend, C: CheckpointStrategy> PoolBackend for Autodiff<B, C> {
    fn max_pool(x: FloatTensor<Self>, w: Window) -> FloatTensor<Self> {
        let (x, gx) = x.into_parts();
        let shape = x.shape();
        match MaxPoolStep.prepare::<C>([gx]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (out, indices) = B::max_pool_indexed(x, w);
                prep.finish((shape, indices, w), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::max_pool(x, w)),
        }
    }

    fn avg_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let (x, gx) = x.into_parts();
        let shape = x.shape();
        match AvgPoolStep.prepare::<C>([gx]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(shape, B::avg_pool2x2(x)),
            OpsKind::UnTracked(prep) => prep.finish(B::avg_pool2x2(x)),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::pool::{AvgPool2dConfig, MaxPool2dConfig};
    use burn::tensor::{Device, Distribution};

    use super::*;

    fn check(a: Tensor<4>, b: Tensor<4>, x: &Tensor<4>, what: &str) {
        assert_eq!(a.dims(), b.dims(), "{what}: shapes");
        let diff: f32 = (a.clone() - b.clone()).abs().max().into_scalar();
        assert_eq!(diff, 0.0, "{what}: forward differs by {diff}");
        let probe = Tensor::<4>::random(a.dims(), Distribution::Normal(0.0, 1.0), &a.device());
        let ga = x.grad(&(a * probe.clone()).sum().backward()).expect("gradient");
        let gb = x.grad(&(b * probe).sum().backward()).expect("gradient");
        let scale: f32 = ga.clone().abs().max().into_scalar();
        let diff: f32 = (ga - gb).abs().max().into_scalar();
        assert!(scale > 0.1 && diff < 1e-6 * scale.max(1.0), "{what}: gradient differs by {diff} (scale {scale})");
    }

    /// The CPU passes equal burn's pools forward and in the gradient: DenseNet's stem pool
    /// (3x3, stride 2, padding 1) and a 2x2 pool on odd and even sizes, batch 2.
    #[test]
    fn equal_burns_pools() {
        let device = Device::flex().autodiff();
        for (h, w) in [(9, 12), (8, 7)] {
            let x = Tensor::<4>::random([2, 3, h, w], Distribution::Normal(0.0, 1.0), &device).require_grad();
            let pool = MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init();
            check(pool.forward(x.clone()), max_pool2d(&pool, x.clone()), &x, "max 3x3/2 pad 1");
            let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
            check(pool.forward(x.clone()), max_pool2d(&pool, x.clone()), &x, "max 2x2/2");
            let pool = AvgPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
            check(pool.forward(x.clone()), avg_pool2x2(&pool, x.clone()), &x, "avg 2x2");
        }
    }

    /// Overlapping windows add their gradients at a shared maximum (a 5x5 plane of -1 with
    /// a 5 at the centre, pooled 3x3 with stride 1: all 9 windows hold it).
    #[test]
    fn shared_maximum_collects_every_window() {
        let device = Device::flex().autodiff();
        let mut v = vec![-1f32; 25];
        v[12] = 5.0;
        let x = Tensor::<4>::from_data(TensorData::new(v, [1, 1, 5, 5]), &device).require_grad();
        let pool = MaxPool2dConfig::new([3, 3]).with_strides([1, 1]).init();
        let y = max_pool2d(&pool, x.clone());
        let g = x.grad(&y.sum().backward()).expect("gradient");
        let g = crate::host(g);
        assert_eq!(g[12], 9.0, "the centre is the maximum of all 9 windows");
        assert_eq!(g.iter().sum::<f32>(), 9.0);
    }
}
