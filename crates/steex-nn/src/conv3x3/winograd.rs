//! Winograd F(2x2, 3x3) for the CPU kernel: 16 matrix products on 4x4 input tiles in
//! place of 9 on the pixels, 2.25x fewer multiplications (Lavin and Gray, 2016).
//!
//! For an output tile `Y` (2x2) of one output channel, with `d` the 4x4 input tile that
//! covers its receptive field and `g` each 3x3 kernel:
//!
//! ```text
//! Y = A^T [ sum_r (G g_r G^T) (.) (B^T d_r B) ] A
//! ```
//!
//! so the 16 positions `xi` of the transformed tile are 16 independent products
//! `P_xi = U_xi V_xi`, `U_xi` `[M, R]` the transformed weights, `V_xi` `[R, tiles]` the
//! transformed input. `U` is a linear combination of the 9 tap matrices, computed once per
//! call (or held by the layer, [`transform_weights`]). The gradient to the input reads the
//! same `U` transposed with its positions reflected (`U'[a][b] = U[P a][P b]`, `P` swapping
//! 0 and 3), since the flipped kernel's transform is `P (G g G^T) P^T`.
//!
//! The error against the direct convolution stays at f32 rounding (a few 1e-7 relative):
//! the transforms only add, subtract and halve.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::flex::{Problem, SendPtr, Taps};

/// Smallest output plane (`H W`) taken by Winograd on held transformed weights: at 8x8
/// the widest trunk layers (1024 x 1024) run their 16 products bound by reading `U`, which
/// still beats the 9 direct products (celeba, 2 AVX-512 cores: 7.9 -> 4.3 ms forward,
/// 6.8 ms backward); at 4x4 reading `U` costs more than the direct products.
const MIN_PLANE: usize = 64;

/// Smallest output plane taken by Winograd with the weights transformed on every call:
/// below it the transform and the 16/9 larger weights cost more than they save (DenseNet121
/// at 8x8: 32 -> 75 ms per step).
const MIN_PLANE_ON_CALL: usize = 256;

/// Fewest output channels taken by Winograd with the weights transformed on every call:
/// with fewer, the output transform and the 16 products do not repay the input transform
/// (DenseNet121's 128 -> 32 forward, batch 32 at 32 x 32: 18.8 ms against 16.2 ms direct;
/// its gradient to the input, 32 -> 128, still gains: 4.7 against 5.2 ms at 16 x 16).
const MIN_OUT_ON_CALL: usize = 64;

/// Whether `p` takes Winograd with its weights transformed on the call.
pub(super) fn eligible(p: &Problem) -> bool {
    shape_fits(p) && p.h * p.w >= MIN_PLANE_ON_CALL && p.m >= MIN_OUT_ON_CALL && p.m * p.r <= MAX_WEIGHTS
}

/// Whether `p`'s plane takes Winograd on held transformed weights (even sizes, a large
/// enough plane; `STEEX_WINOGRAD=0` turns it off, for comparisons).
pub(super) fn shape_fits(p: &Problem) -> bool {
    plane_fits(p.h, p.w) && on()
}

/// Whether an `h x w` plane takes Winograd on held weights (even sizes, at least
/// [`MIN_PLANE`] pixels).
pub fn plane_fits(h: usize, w: usize) -> bool {
    h.is_multiple_of(2) && w.is_multiple_of(2) && h * w >= MIN_PLANE
}

fn on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("STEEX_WINOGRAD").map_or(true, |v| v != "0"))
}

/// Largest `M R` whose weights are transformed on every call (8 MiB of transformed
/// weights): wider layers keep the direct kernel.
const MAX_WEIGHTS: usize = 1 << 17;

/// `U` `[16, D1, D2]` of tap-major weights `[9, D1, D2]`: `U[4a + b] = sum_ij G[a][i]
/// G[b][j] W[3i + j]`, elementwise over the `D1 D2` entries.
#[allow(clippy::needless_range_loop)] // the 4 x 4 positions read best as indices
pub fn transform_weights(weights: &[f32], d: usize) -> Vec<f32> {
    assert_eq!(weights.len(), 9 * d, "weights must be [9, D1, D2]");
    let mut u = vec![0f32; 16 * d];
    let ptr = SendPtr(u.as_mut_ptr());
    const CHUNK: usize = 4096;
    (0..d.div_ceil(CHUNK)).into_par_iter().for_each(|c| {
        let (e0, e1) = (c * CHUNK, ((c + 1) * CHUNK).min(d));
        let w = |t: usize| &weights[t * d + e0..t * d + e1];
        // Columns: T[i][b] = sum_j G[b][j] W[3i + j].
        let mut tcols: Vec<[Vec<f32>; 4]> = Vec::with_capacity(3);
        for i in 0..3 {
            let (w0, w1, w2) = (w(3 * i), w(3 * i + 1), w(3 * i + 2));
            let half_sum: Vec<f32> = (0..e1 - e0).map(|e| 0.5 * (w0[e] + w1[e] + w2[e])).collect();
            let half_diff: Vec<f32> = (0..e1 - e0).map(|e| 0.5 * (w0[e] - w1[e] + w2[e])).collect();
            tcols.push([w0.to_vec(), half_sum, half_diff, w2.to_vec()]);
        }
        // Rows: U[a][b] = sum_i G[a][i] T[i][b].
        for b in 0..4 {
            let (t0, t1, t2) = (&tcols[0][b], &tcols[1][b], &tcols[2][b]);
            for a in 0..4 {
                // SAFETY: rows [e0, e1) of position 4a + b, written by this chunk only.
                let dst = unsafe { std::slice::from_raw_parts_mut(ptr.get().add((4 * a + b) * d + e0), e1 - e0) };
                for e in 0..e1 - e0 {
                    dst[e] = match a {
                        0 => t0[e],
                        1 => 0.5 * (t0[e] + t1[e] + t2[e]),
                        2 => 0.5 * (t0[e] - t1[e] + t2[e]),
                        _ => t2[e],
                    };
                }
            }
        }
    });
    u
}

/// Runs `p` by Winograd with `u` the transformed weights of `p.weights` (`[16, D1, D2]`,
/// [`transform_weights`]): `[B, M, H, W]`. The plane is done in bands of tile rows whose
/// transformed input and products stay within a few MiB (cache-sized, and reused from the
/// allocator instead of fresh pages).
pub(super) fn run(p: &Problem, u: &[f32]) -> Vec<f32> {
    let (m, h, w) = (p.m, p.h, p.w);
    let (th, tw) = (h / 2, w / 2);
    // Every entry is written by the bands below (no zeroing pass first).
    let len = p.batch * m * h * w;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let band_tiles = (BAND_FLOATS / (16 * (p.r + m))).max(64);
    let band_rows = band_tiles.div_ceil(p.batch * tw).clamp(1, th);
    let mut prod = Vec::new();
    let mut v = Vec::new();
    for ty0 in (0..th).step_by(band_rows) {
        let rows = band_rows.min(th - ty0);
        let n = p.batch * rows * tw;
        transform_input(p, ty0, rows, &mut v);
        products(p, u, &v, n, &mut prod);
        transform_output(p, &prod, ty0, rows, &mut out.spare_capacity_mut()[..len]);
    }
    // SAFETY: the bands cover tile rows 0 .. H/2 and each writes output rows 2 ty and
    // 2 ty + 1, all W columns, of every plane: all `len` entries are initialised.
    unsafe { out.set_len(len) };
    out
}

/// Floats of one band's transformed input and products together (~8 MiB).
const BAND_FLOATS: usize = 2 << 20;

/// The 16 products `P_xi = U_xi V_xi` into `prod` `[16, M, n]`.
fn products(p: &Problem, u: &[f32], v: &[f32], n: usize, prod: &mut Vec<f32>) {
    let (m, r) = (p.m, p.r);
    // Every entry is written below: a reused buffer is not cleared first.
    prod.resize(16 * m * n, 0.0);
    let prod_ptr = SendPtr(prod.as_mut_ptr());
    // Column chunks keep each product's panel of V in cache and give the threads enough tasks.
    let cols = n.min(1024);
    let chunks = n.div_ceil(cols);
    if matches!(p.taps, Taps::InputGrad) && n < FEW_TILES {
        products_few_tiles(p, u, v, n, prod_ptr);
        return;
    }
    (0..16 * chunks).into_par_iter().for_each(|task| {
        let (xi, ch) = (task / chunks, task % chunks);
        let n0 = ch * cols;
        let nb = cols.min(n - n0);
        let (lhs, lhs_cs, lhs_rs) = match p.taps {
            Taps::Forward => (&u[xi * m * r..], 1isize, r as isize),
            Taps::InputGrad => (&u[reflected(xi) * m * r..], m as isize, 1isize),
        };
        // SAFETY: lhs covers [m, r], rhs [r, nb] (row stride n) and dst [m, nb] (row stride n)
        // inside their buffers; tasks write disjoint (xi, column chunk) blocks.
        unsafe {
            product(
                [m, nb, r],
                (prod_ptr.get().add(xi * m * n + n0), 1, n as isize),
                (lhs.as_ptr(), lhs_cs, lhs_rs),
                (v[xi * r * n + n0..].as_ptr(), 1, n as isize),
            );
        }
    });
}

/// The position of `U` that the gradient's position `xi` reads: rows and columns of the
/// 4 x 4 positions reflected (`P` swaps 0 and 3).
fn reflected(xi: usize) -> usize {
    let reflect = |q: usize| [3, 1, 2, 0][q];
    4 * reflect(xi / 4) + reflect(xi % 4)
}

/// `dst = lhs rhs` for `[m, n, k]`, single-threaded, each operand a pointer with its column
/// and row strides.
///
/// # Safety
/// Every operand's strided extent lies inside its buffer; nothing else writes `dst`'s.
unsafe fn product(
    [m, n, k]: [usize; 3],
    dst: (*mut f32, isize, isize),
    lhs: (*const f32, isize, isize),
    rhs: (*const f32, isize, isize),
) {
    // SAFETY: the caller's.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.1,
            dst.2,
            false,
            lhs.0,
            lhs.1,
            lhs.2,
            rhs.0,
            rhs.1,
            rhs.2,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Below this many tiles the gradient's products are computed channel-major (see
/// [`products_few_tiles`]).
const FEW_TILES: usize = 64;

/// The gradient's 16 products when there are few tiles (the widest layers at 8x8): `gemm`
/// then vectorises along the channels, reading `U` down its contiguous columns, into a
/// `[tiles, C]` block that is transposed into `prod` `[16, C, n]` (`gemm` on the `[C,
/// tiles]` layout vectorises along the few tiles and reads `U` across its rows: 8.8 ->
/// 6.8 ms on a 1024 x 1024 layer at 8x8).
fn products_few_tiles(p: &Problem, u: &[f32], v: &[f32], n: usize, prod: SendPtr) {
    let (m, r) = (p.m, p.r);
    (0..16).into_par_iter().for_each_init(Vec::new, |block: &mut Vec<f32>, xi| {
        let src = reflected(xi);
        block.clear();
        block.resize(n * m, 0.0);
        // SAFETY: lhs (U reflected, transposed) covers [m, r] with column stride m inside
        // `u`, rhs [r, n] inside `v`, dst [m, n] column-major in `block`.
        unsafe {
            product(
                [m, n, r],
                (block.as_mut_ptr(), m as isize, 1),
                (u[src * m * r..].as_ptr(), m as isize, 1),
                (v[xi * r * n..].as_ptr(), 1, n as isize),
            );
        }
        for c in 0..m {
            // SAFETY: row c of product xi: this task's only.
            let dst = unsafe { std::slice::from_raw_parts_mut(prod.get().add((xi * m + c) * n), n) };
            for (t, d) in dst.iter_mut().enumerate() {
                *d = block[t * m + c];
            }
        }
    });
}

/// `V` `[16, R, n]` into `v`: `B^T d B` of every 4x4 input tile of tile rows `ty0 ..
/// ty0 + rows` (zero padding around the plane), tile `img * rows * W/2 + (ty - ty0) W/2 + tx`.
///
/// The padded rows are held split into their even and odd columns (padded column `2 j` in
/// `even[j]`, `2 j + 1` in `odd[j]`), so that the transform along the columns, which reads
/// columns `2 tx .. 2 tx + 3` for tile `tx`, runs on unit strides (vectorised).
fn transform_input(p: &Problem, ty0: usize, rows_n: usize, v: &mut Vec<f32>) {
    let (r, h, w) = (p.r, p.h, p.w);
    let tw = w / 2;
    let n = p.batch * rows_n * tw;
    // Every entry is written below: a reused buffer is not cleared first.
    v.resize(16 * r * n, 0.0);
    let ptr = SendPtr(v.as_mut_ptr());
    // Even and odd halves of a padded row (w + 2 columns): tw + 1 entries each.
    let half = tw + 1;
    (0..p.batch * r).into_par_iter().for_each_init(
        || vec![0f32; 16 * half],
        |buf, plane| {
            pulp::Arch::new().dispatch(
                #[inline(always)]
                || {
                    let (img, ri) = (plane / r, plane % r);
                    let src = &p.src[plane * h * w..(plane + 1) * h * w];
                    let (rows, tr) = buf.split_at_mut(8 * half);
                    for ty in ty0..ty0 + rows_n {
                        // The 4 padded input rows 2 ty - 1 .. 2 ty + 2, split: padded column c is
                        // source column c - 1, so even[j] = src[2 j - 1] and odd[j] = src[2 j].
                        for k in 0..4 {
                            let (even, odd) = rows[2 * k * half..(2 * k + 2) * half].split_at_mut(half);
                            let y = (2 * ty + k) as isize - 1;
                            if y < 0 || y >= h as isize {
                                even.fill(0.0);
                                odd.fill(0.0);
                            } else {
                                let row = &src[y as usize * w..(y as usize + 1) * w];
                                even[0] = 0.0;
                                odd[tw] = 0.0;
                                for (j, pair) in row.chunks_exact(2).enumerate() {
                                    odd[j] = pair[0];
                                    even[j + 1] = pair[1];
                                }
                            }
                        }
                        // Rows of B^T d, over every padded column (both halves at once).
                        let row = |k: usize| &rows[2 * k * half..(2 * k + 2) * half];
                        let (d0, d1, d2, d3) = (row(0), row(1), row(2), row(3));
                        let (t0, rest) = tr.split_at_mut(2 * half);
                        let (t1, rest) = rest.split_at_mut(2 * half);
                        let (t2, t3) = rest.split_at_mut(2 * half);
                        for x in 0..2 * half {
                            t0[x] = d0[x] - d2[x];
                            t1[x] = d1[x] + d2[x];
                            t2[x] = d2[x] - d1[x];
                            t3[x] = d1[x] - d3[x];
                        }
                        // Columns: (B^T d) B per tile, on columns 2 tx .. 2 tx + 3 = even[tx],
                        // odd[tx], even[tx + 1], odd[tx + 1].
                        let base = (img * rows_n + ty - ty0) * tw;
                        for (k, t) in [&*t0, &*t1, &*t2, &*t3].into_iter().enumerate() {
                            let (even, odd) = t.split_at(half);
                            // SAFETY: positions 4k..4k+3 of channel ri, tiles [base, base + tw):
                            // written by this plane's task only.
                            let out = |j: usize| unsafe {
                                std::slice::from_raw_parts_mut(ptr.get().add(((4 * k + j) * r + ri) * n + base), tw)
                            };
                            let (o0, o1, o2, o3) = (out(0), out(1), out(2), out(3));
                            let (a, b, cc, d) = (&even[..tw], &odd[..tw], &even[1..], &odd[1..]);
                            for tx in 0..tw {
                                o0[tx] = a[tx] - cc[tx];
                                o1[tx] = b[tx] + cc[tx];
                                o2[tx] = cc[tx] - b[tx];
                                o3[tx] = b[tx] - d[tx];
                            }
                        }
                    }
                },
            )
        },
    );
}

/// Tile rows `ty0 .. ty0 + rows` of the output `[B, M, H, W]` from their products
/// `[16, M, n]`: `A^T P A` per tile, plus bias. The tiles' even and odd output columns are
/// computed on unit strides, then interleaved.
fn transform_output(p: &Problem, prod: &[f32], ty0: usize, rows_n: usize, out: &mut [MaybeUninit<f32>]) {
    let (m, h, w) = (p.m, p.h, p.w);
    let tw = w / 2;
    let n = p.batch * rows_n * tw;
    out.par_chunks_mut(h * w).enumerate().for_each_init(
        || vec![0f32; 4 * tw],
        |buf, (plane, dst)| {
            pulp::Arch::new().dispatch(
                #[inline(always)]
                || {
                    let (img, mi) = (plane / m, plane % m);
                    let bias = p.bias.map_or(0.0, |b| b[mi]);
                    let (te, rest) = buf.split_at_mut(tw);
                    let (to, rest) = rest.split_at_mut(tw);
                    let (be, bo) = rest.split_at_mut(tw);
                    for ty in ty0..ty0 + rows_n {
                        let base = (img * rows_n + ty - ty0) * tw;
                        let q: [&[f32]; 16] = std::array::from_fn(|xi| &prod[(xi * m + mi) * n + base..][..tw]);
                        for tx in 0..tw {
                            // Rows of A^T P: a0 = P0 + P1 + P2, a1 = P1 - P2 - P3 (each a row of 4).
                            let a0: [f32; 4] = std::array::from_fn(|j| q[j][tx] + q[4 + j][tx] + q[8 + j][tx]);
                            let a1: [f32; 4] = std::array::from_fn(|j| q[4 + j][tx] - q[8 + j][tx] - q[12 + j][tx]);
                            te[tx] = a0[0] + a0[1] + a0[2] + bias;
                            to[tx] = a0[1] - a0[2] - a0[3] + bias;
                            be[tx] = a1[0] + a1[1] + a1[2] + bias;
                            bo[tx] = a1[1] - a1[2] - a1[3] + bias;
                        }
                        let (top, bottom) = dst[2 * ty * w..(2 * ty + 2) * w].split_at_mut(w);
                        for (pair, (e, o)) in top.chunks_exact_mut(2).zip(te.iter().zip(to.iter())) {
                            pair[0].write(*e);
                            pair[1].write(*o);
                        }
                        for (pair, (e, o)) in bottom.chunks_exact_mut(2).zip(be.iter().zip(bo.iter())) {
                            pair[0].write(*e);
                            pair[1].write(*o);
                        }
                    }
                },
            )
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Winograd equals the direct kernel, forward and gradient to the input, on planes
    /// with borders on every side, batch 2 and odd channel counts.
    #[test]
    fn equals_the_direct_kernel_both_ways() {
        // Many tiles, then few (the gradient's channel-major products, [`FEW_TILES`]).
        for (batch, k, c, h, w) in [(2, 7, 5, 16, 18), (1, 9, 6, 8, 8)] {
            assert_eq!(batch * h * w / 4 < FEW_TILES, h == 8);
            let weights = random(9 * k * c, 1);
            let bias = random(k, 2);
            let u = transform_weights(&weights, k * c);
            for (taps, m, r, b) in [(Taps::Forward, k, c, Some(&bias[..])), (Taps::InputGrad, c, k, None)] {
                let src = random(batch * r * h * w, 3);
                let p = Problem { src: &src, weights: &weights, bias: b, batch, m, r, h, w, taps };
                assert!(h * w >= MIN_PLANE);
                let direct = super::super::flex::run_inner(&p);
                let fast = run(&p, &u);
                let scale = direct.iter().fold(0f32, |a, v| a.max(v.abs()));
                let err = direct.iter().zip(&fast).fold(0f32, |a, (x, y)| a.max((x - y).abs()));
                assert!(scale > 1.0, "the output carries signal ({scale})");
                assert!(err < 1e-5 * scale, "{:?}: max error {err} at scale {scale}", m);
            }
        }
    }
}
