//! The CPU kernels of [`super::skinny_matmul`]: a large matrix `W` `[M, K]` against a few
//! vectors, bound by reading `W` once. Each task streams a block of `W`'s rows while the
//! vectors stay in cache; the inner loops run in 16 independent lanes with fused
//! multiply-adds, compiled for AVX-512 and AVX2 and chosen at run time (plain loops
//! elsewhere).

use rayon::prelude::*;

/// Rows of `W` per task (~128 KiB of `W` at `K` = 512, kept in L2 by the backward).
const ROWS: usize = 64;
const LANES: usize = 16;

/// Which instruction set the kernels run with, detected once.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx2,
    Plain,
}

fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Plain
    })
}

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// `y[r][n] = sum_k w[r][k] v[n][k]` for the rows of `w` (`[rows, K]`) and `v` `[N, K]`,
/// `N` a multiple of 4, into `y` `[rows, N]`: blocks of 4 rows x 4 vectors in 16 lanes each
/// (a last block of fewer rows is copied into a zero-padded one).
#[inline(always)]
fn dots<const FMA: bool>(w: &[f32], v: &[f32], k: usize, y: &mut [f32]) {
    let rows = w.len() / k;
    let n = v.len() / k;
    let mut pad = Vec::new();
    for r0 in (0..rows).step_by(4) {
        let rb = (rows - r0).min(4);
        let wb: &[f32] = if rb == 4 {
            &w[r0 * k..(r0 + 4) * k]
        } else {
            pad.clear();
            pad.extend_from_slice(&w[r0 * k..(r0 + rb) * k]);
            pad.resize(4 * k, 0.0);
            &pad
        };
        for n0 in (0..n).step_by(4) {
            let acc = block::<FMA>(wb, &v[n0 * k..(n0 + 4) * k], k);
            for i in 0..rb {
                y[(r0 + i) * n + n0..(r0 + i) * n + n0 + 4].copy_from_slice(&acc[i]);
            }
        }
    }
}

/// The 4 x 4 dot products of 4 rows `w` `[4, K]` and 4 vectors `v` `[4, K]`.
#[inline(always)]
fn block<const FMA: bool>(w: &[f32], v: &[f32], k: usize) -> [[f32; 4]; 4] {
    let full = k / LANES * LANES;
    let mut acc = [[[0f32; LANES]; 4]; 4];
    for o in (0..full).step_by(LANES) {
        let wr: [&[f32; LANES]; 4] = std::array::from_fn(|i| w[i * k + o..][..LANES].try_into().expect("lanes"));
        let vc: [&[f32; LANES]; 4] = std::array::from_fn(|j| v[j * k + o..][..LANES].try_into().expect("lanes"));
        for i in 0..4 {
            for j in 0..4 {
                for l in 0..LANES {
                    acc[i][j][l] = madd::<FMA>(wr[i][l], vc[j][l], acc[i][j][l]);
                }
            }
        }
    }
    std::array::from_fn(|i| {
        std::array::from_fn(|j| {
            let mut s: f32 = acc[i][j].iter().sum();
            for t in full..k {
                s = madd::<FMA>(w[i * k + t], v[j * k + t], s);
            }
            s
        })
    })
}

/// `g[n][k] += sum_r gy[r][n] w[r][k]` over the rows of `w` (`[rows, K]`), `gy` `[rows, N]`,
/// `g` `[N, K]`, `N` a multiple of 8: for each 16-lane slice of `K`, 8 vectors at a time in
/// registers.
#[inline(always)]
fn axpys<const FMA: bool>(w: &[f32], gy: &[f32], k: usize, g: &mut [f32]) {
    let rows = w.len() / k;
    let n = g.len() / k;
    for o in (0..k).step_by(LANES) {
        let lanes = (k - o).min(LANES);
        for n0 in (0..n).step_by(8) {
            let mut acc = [[0f32; LANES]; 8];
            for r in 0..rows {
                let mut wr = [0f32; LANES];
                wr[..lanes].copy_from_slice(&w[r * k + o..r * k + o + lanes]);
                let s: &[f32; 8] = gy[r * n + n0..][..8].try_into().expect("8 vectors");
                for j in 0..8 {
                    for l in 0..LANES {
                        acc[j][l] = madd::<FMA>(s[j], wr[l], acc[j][l]);
                    }
                }
            }
            for (j, a) in acc.iter().enumerate() {
                let dst = &mut g[(n0 + j) * k + o..(n0 + j) * k + o + lanes];
                for (d, a) in dst.iter_mut().zip(a) {
                    *d += a;
                }
            }
        }
    }
}

/// The x86 kernels with explicit vector instructions (the compiler does not keep the
/// accumulators of the portable loops in registers).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // register blocks read best as indexed loops
mod x86 {
    use std::arch::x86_64::*;

    /// [`super::dots`] with AVX-512: 4 rows x 4 vectors, 16 accumulators of 16 lanes.
    #[target_feature(enable = "avx512f")]
    pub fn dots_avx512(w: &[f32], v: &[f32], k: usize, y: &mut [f32]) {
        let rows = w.len() / k;
        let n = v.len() / k;
        let full = k / 16 * 16;
        for r0 in (0..rows).step_by(4) {
            let rb = (rows - r0).min(4);
            for n0 in (0..n).step_by(4) {
                let nb = (n - n0).min(4);
                let wr: [usize; 4] = std::array::from_fn(|i| (r0 + i.min(rb - 1)) * k);
                let vr: [usize; 4] = std::array::from_fn(|j| (n0 + j.min(nb - 1)) * k);
                let mut acc = [[_mm512_setzero_ps(); 4]; 4];
                // The next 4 rows are fetched while the first 4 vectors run (rows of 2 KiB are
                // too short for the hardware prefetcher to get ahead).
                let ahead = n0 == 0 && r0 + 8 <= rows;
                let mut o = 0;
                while o < full {
                    // SAFETY: rows wr[i] and vr[j] have k >= o + 16 entries; rows r0 + 4 ..
                    // r0 + 8 exist when `ahead`.
                    unsafe {
                        if ahead {
                            for i in 4..8 {
                                _mm_prefetch::<_MM_HINT_T0>(w.as_ptr().add((r0 + i) * k + o) as *const i8);
                            }
                        }
                        let wv: [__m512; 4] = std::array::from_fn(|i| _mm512_loadu_ps(w.as_ptr().add(wr[i] + o)));
                        for j in 0..4 {
                            let vv = _mm512_loadu_ps(v.as_ptr().add(vr[j] + o));
                            for i in 0..4 {
                                acc[i][j] = _mm512_fmadd_ps(wv[i], vv, acc[i][j]);
                            }
                        }
                    }
                    o += 16;
                }
                for i in 0..rb {
                    for j in 0..nb {
                        let mut s = _mm512_reduce_add_ps(acc[i][j]);
                        for t in full..k {
                            s += w[wr[i] + t] * v[vr[j] + t];
                        }
                        y[(r0 + i) * n + n0 + j] = s;
                    }
                }
            }
        }
    }

    /// [`super::dots`] with AVX2: 2 rows x 4 vectors, 8 accumulators of 8 lanes.
    #[target_feature(enable = "avx2,fma")]
    pub fn dots_avx2(w: &[f32], v: &[f32], k: usize, y: &mut [f32]) {
        let rows = w.len() / k;
        let n = v.len() / k;
        let full = k / 8 * 8;
        for r0 in (0..rows).step_by(2) {
            let rb = (rows - r0).min(2);
            for n0 in (0..n).step_by(4) {
                let nb = (n - n0).min(4);
                let wr: [usize; 2] = std::array::from_fn(|i| (r0 + i.min(rb - 1)) * k);
                let vr: [usize; 4] = std::array::from_fn(|j| (n0 + j.min(nb - 1)) * k);
                let mut acc = [[_mm256_setzero_ps(); 4]; 2];
                let mut o = 0;
                while o < full {
                    // SAFETY: rows wr[i] and vr[j] have k >= o + 8 entries.
                    unsafe {
                        let wv: [__m256; 2] = std::array::from_fn(|i| _mm256_loadu_ps(w.as_ptr().add(wr[i] + o)));
                        for j in 0..4 {
                            let vv = _mm256_loadu_ps(v.as_ptr().add(vr[j] + o));
                            for i in 0..2 {
                                acc[i][j] = _mm256_fmadd_ps(wv[i], vv, acc[i][j]);
                            }
                        }
                    }
                    o += 8;
                }
                for i in 0..rb {
                    for j in 0..nb {
                        let mut lanes = [0f32; 8];
                        // SAFETY: `lanes` holds 8 floats.
                        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[i][j]) };
                        let mut s: f32 = lanes.iter().sum();
                        for t in full..k {
                            s += w[wr[i] + t] * v[vr[j] + t];
                        }
                        y[(r0 + i) * n + n0 + j] = s;
                    }
                }
            }
        }
    }

    /// [`super::axpys`] with AVX-512: 8 vectors x 16 lanes in registers.
    #[target_feature(enable = "avx512f")]
    /// `N` a multiple of 4 (not 8).
    pub fn axpys_avx512(w: &[f32], gy: &[f32], k: usize, g: &mut [f32], next: &[f32]) {
        let rows = w.len() / k;
        let n = g.len() / k;
        let full = k / 16 * 16;
        for o in (0..full).step_by(16) {
            // This column slice of the next block, fetched while this block's runs (a block is
            // read down its columns, which the hardware prefetcher does not follow).
            for r in 0..next.len() / k {
                // SAFETY: row r of `next` has k > o entries.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(next.as_ptr().add(r * k + o) as *const i8) };
            }
            // Groups of 8 vectors, and a last one of 4 where N is not a multiple of 8.
            macro_rules! group {
                ($n0:expr, $G:literal) => {{
                    let mut acc = [_mm512_setzero_ps(); $G];
                    for r in 0..rows {
                        // SAFETY: row r of w has k >= o + 16 entries; gy's row r has n >= n0 + G.
                        unsafe {
                            let wv = _mm512_loadu_ps(w.as_ptr().add(r * k + o));
                            for j in 0..$G {
                                let s = _mm512_set1_ps(*gy.get_unchecked(r * n + $n0 + j));
                                acc[j] = _mm512_fmadd_ps(s, wv, acc[j]);
                            }
                        }
                    }
                    for (j, a) in acc.iter().enumerate() {
                        let p = g[($n0 + j) * k + o..][..16].as_mut_ptr();
                        // SAFETY: 16 floats of g at p.
                        unsafe { _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), *a)) };
                    }
                }};
            }
            for n0 in (0..n).step_by(8) {
                if n - n0 >= 8 {
                    group!(n0, 8);
                } else {
                    group!(n0, 4);
                }
            }
        }
        super::axpys_tail(w, gy, k, full, g);
    }

    /// [`super::axpys`] with AVX2: 8 vectors x 8 lanes in registers.
    #[target_feature(enable = "avx2,fma")]
    pub fn axpys_avx2(w: &[f32], gy: &[f32], k: usize, g: &mut [f32]) {
        let rows = w.len() / k;
        let n = g.len() / k;
        let full = k / 8 * 8;
        for o in (0..full).step_by(8) {
            for n0 in (0..n).step_by(8) {
                let mut acc = [_mm256_setzero_ps(); 8];
                for r in 0..rows {
                    // SAFETY: row r of w has k >= o + 8 entries; gy's row r has n >= n0 + 8.
                    unsafe {
                        let wv = _mm256_loadu_ps(w.as_ptr().add(r * k + o));
                        for j in 0..8 {
                            let s = _mm256_set1_ps(*gy.get_unchecked(r * n + n0 + j));
                            acc[j] = _mm256_fmadd_ps(s, wv, acc[j]);
                        }
                    }
                }
                for (j, a) in acc.iter().enumerate() {
                    let p = g[(n0 + j) * k + o..][..8].as_mut_ptr();
                    // SAFETY: 8 floats of g at p.
                    unsafe { _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), *a)) };
                }
            }
        }
        super::axpys_tail(w, gy, k, full, g);
    }
}

/// The columns `from..K` of [`axpys`], plainly.
fn axpys_tail(w: &[f32], gy: &[f32], k: usize, from: usize, g: &mut [f32]) {
    let rows = w.len() / k;
    let n = g.len() / k;
    for r in 0..rows {
        for j in 0..n {
            let s = gy[r * n + j];
            for t in from..k {
                g[j * k + t] += s * w[r * k + t];
            }
        }
    }
}

fn dots_any(w: &[f32], v: &[f32], k: usize, y: &mut [f32]) {
    match isa() {
        // SAFETY: the features were detected on this CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::dots_avx512(w, v, k, y) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::dots_avx2(w, v, k, y) },
        _ => dots::<false>(w, v, k, y),
    }
}

/// [`axpys`] on the rows `w`, with `next` (the rows to come, possibly none) fetched into
/// cache meanwhile.
fn axpys_any(w: &[f32], gy: &[f32], k: usize, g: &mut [f32], next: &[f32]) {
    match isa() {
        // SAFETY: the features were detected on this CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::axpys_avx512(w, gy, k, g, next) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::axpys_avx2(w, gy, k, g) },
        _ => axpys::<false>(w, gy, k, g),
    }
}

/// `rows` rows of `cols` columns, zero-padded to a multiple of `q` rows.
fn padded(x: &[f32], cols: usize, q: usize) -> Vec<f32> {
    let rows = x.len() / cols;
    let mut p = x.to_vec();
    p.resize(rows.div_ceil(q) * q * cols, 0.0);
    p
}

/// `Y = W V^T`: `w` `[M, K]`, `v` `[N, K]` -> `[M, N]`.
pub fn forward(w: &[f32], v: &[f32], k: usize) -> Vec<f32> {
    let (m, n) = (w.len() / k, v.len() / k);
    let v = padded(v, k, 4);
    let np = v.len() / k;
    let mut y = vec![0f32; m * np];
    y.par_chunks_mut(ROWS * np).zip(w.par_chunks(ROWS * k)).for_each(|(y, w)| dots_any(w, &v, k, y));
    if np == n {
        return y;
    }
    y.chunks(np).flat_map(|row| &row[..n]).copied().collect()
}

/// `G_v = G^T W`: `w` `[M, K]`, `gy` `[M, N]` -> `[N, K]`, each thread summing its own rows.
pub fn grad_v(w: &[f32], gy: &[f32], k: usize) -> Vec<f32> {
    let m = w.len() / k;
    let n = gy.len() / m.max(1);
    // The vectors in groups of 8 (AVX-512: and a last one of 4).
    let np = if isa() == Isa::Avx512 { n.div_ceil(4) * 4 } else { n.div_ceil(8) * 8 };
    let gy: Vec<f32> = if np == n {
        gy.to_vec()
    } else {
        gy.chunks(n).flat_map(|r| r.iter().copied().chain((n..np).map(|_| 0.0))).collect()
    };
    let threads = rayon::current_num_threads().max(1);
    let per = (m.div_ceil(threads).div_ceil(ROWS) * ROWS).max(ROWS);
    let partials: Vec<Vec<f32>> = (0..m.div_ceil(per))
        .into_par_iter()
        .map(|t| {
            let (r0, r1) = (t * per, ((t + 1) * per).min(m));
            let mut g = vec![0f32; np * k];
            for b0 in (r0..r1).step_by(ROWS) {
                let b1 = (b0 + ROWS).min(r1);
                let b2 = (b1 + ROWS).min(r1);
                axpys_any(&w[b0 * k..b1 * k], &gy[b0 * np..b1 * np], k, &mut g, &w[b1 * k..b2 * k]);
            }
            g
        })
        .collect();
    let mut parts = partials.into_iter();
    let mut g = parts.next().unwrap_or_else(|| vec![0f32; np * k]);
    for p in parts {
        for (a, b) in g.iter_mut().zip(&p) {
            *a += b;
        }
    }
    g.truncate(n * k);
    g
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

    /// Both kernels against plain sums, on sizes that leave partial blocks and lanes
    /// (M = 203 rows, N = 19 and 6 vectors, K = 37 and 512), with every instruction set
    /// this CPU has and the plain loops.
    #[test]
    fn kernels_equal_plain_sums() {
        for (m, n, k) in [(203, 19, 37), (130, 6, 512)] {
            let (w, v, gy) = (random(m * k, 1), random(n * k, 2), random(m * n, 3));
            let y = forward(&w, &v, k);
            let g = grad_v(&w, &gy, k);
            let np = n.div_ceil(8) * 8;
            let mut y_plain = vec![0f32; m * np];
            dots::<false>(&w, &padded(&v, k, 8), k, &mut y_plain);
            let y_plain: Vec<f32> = y_plain.chunks(np).flat_map(|r| &r[..n]).copied().collect();
            let gy_pad: Vec<f32> = gy.chunks(n).flat_map(|r| r.iter().copied().chain((n..np).map(|_| 0.0))).collect();
            let mut g_plain = vec![0f32; np * k];
            axpys::<false>(&w, &gy_pad, k, &mut g_plain);
            // The AVX2 kernels too, where this CPU has them (an AVX-512 CPU takes the
            // AVX-512 ones above).
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                let (vp, np) = (padded(&v, k, 4), n.div_ceil(4) * 4);
                let mut y2 = vec![0f32; m * np];
                // SAFETY: the features were detected above.
                unsafe { x86::dots_avx2(&w, &vp, k, &mut y2) };
                let mut g2 = vec![0f32; g_plain.len()];
                unsafe { x86::axpys_avx2(&w, &gy_pad, k, &mut g2) };
                for r in 0..m {
                    for j in 0..n {
                        assert!((y2[r * np + j] - y_plain[r * n + j]).abs() < 1e-4, "avx2 y[{r}][{j}]");
                    }
                }
                for (a, b) in g2.iter().zip(&g_plain) {
                    assert!((a - b).abs() < 1e-3, "avx2 gradient {a} vs {b}");
                }
            }
            for r in 0..m {
                for j in 0..n {
                    let e: f64 = (0..k).map(|t| w[r * k + t] as f64 * v[j * k + t] as f64).sum();
                    assert!((y[r * n + j] as f64 - e).abs() < 1e-4, "y[{r}][{j}] {} vs {e}", y[r * n + j]);
                    assert!((y_plain[r * n + j] as f64 - e).abs() < 1e-4);
                }
            }
            for j in 0..n {
                for t in 0..k {
                    let e: f64 = (0..m).map(|r| gy[r * n + j] as f64 * w[r * k + t] as f64).sum();
                    assert!((g[j * k + t] as f64 - e).abs() < 1e-3, "g[{j}][{t}] {} vs {e}", g[j * k + t]);
                    assert!((g_plain[j * k + t] as f64 - e).abs() < 1e-3);
                }
            }
        }
    }
}
