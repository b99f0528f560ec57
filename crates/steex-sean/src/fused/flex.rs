//! The fused ACE modulation's kernels on Flex: one pass over each (image, channel) plane,
//! planes in parallel.

use burn::backend::flex::FlexTensor;
use burn::backend::{DType, Shape, TensorData, TensorMetadata};
use rayon::prelude::*;

use super::{AceGrads, AceInputs};

fn f32s(t: &FlexTensor) -> FlexTensor {
    let t =
        if t.dtype() == DType::F32 { t.clone() } else { FlexTensor::from_data(t.clone().into_data().convert::<f32>()) };
    if t.is_contiguous() && t.layout().start_offset() == 0 { t } else { t.to_contiguous() }
}

fn indices(t: &FlexTensor) -> Vec<u32> {
    let t = if t.is_contiguous() && t.layout().start_offset() == 0 { t.clone() } else { t.to_contiguous() };
    match t.dtype() {
        DType::I64 => t.storage::<i64>().iter().map(|&v| v as u32).collect(),
        DType::I32 => t.storage::<i32>().iter().map(|&v| v as u32).collect(),
        _ => t
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .expect("index data")
            .into_iter()
            .map(|v| v as u32)
            .collect(),
    }
}

/// The inputs as host slices.
struct View {
    x: FlexTensor,
    noise: Option<FlexTensor>,
    nv: FlexTensor,
    scale: FlexTensor,
    shift: FlexTensor,
    styles: Option<(FlexTensor, Vec<u32>, usize)>,
    gamma: FlexTensor,
    beta: FlexTensor,
    leaky: bool,
    dims: [usize; 4],
}

impl View {
    fn new(i: &AceInputs<burn::backend::Flex>) -> Self {
        let dims: [usize; 4] = i.x.shape().dims();
        let styles = i.flags.style.then(|| {
            let s = f32s(&i.styles);
            let u = s.shape().dims::<3>()[2];
            (s, indices(&i.index), u)
        });
        View {
            x: f32s(&i.x),
            noise: i.flags.noise.then(|| f32s(&i.noise)),
            nv: f32s(&i.nv),
            scale: f32s(&i.scale),
            shift: f32s(&i.shift),
            styles,
            gamma: f32s(&i.gamma),
            beta: f32s(&i.beta),
            leaky: i.flags.leaky,
            dims,
        }
    }

    /// For plane `(b, c)`: `(x, noise, gamma, beta, style rows (gamma, beta) and indices,
    /// nv, scale, shift)`.
    #[allow(clippy::type_complexity)]
    fn plane(&self, bc: usize) -> Plane<'_> {
        let [_, c, h, w] = self.dims;
        let hw = h * w;
        let (b, ch) = (bc / c, bc % c);
        fn map(t: &FlexTensor, hw: usize, c: usize, ch: usize, bc: usize) -> &[f32] {
            let s = t.storage::<f32>();
            // Mask-only maps may hold one image for the whole batch.
            let k = if s.len() / hw == c { ch } else { bc };
            &s[k * hw..(k + 1) * hw]
        }
        Plane {
            x: &self.x.storage::<f32>()[bc * hw..(bc + 1) * hw],
            noise: self.noise.as_ref().map(|n| {
                let s = n.storage::<f32>();
                let k = if s.len() == hw { 0 } else { b };
                &s[k * hw..(k + 1) * hw]
            }),
            gamma: map(&self.gamma, hw, c, ch, bc),
            beta: map(&self.beta, hw, c, ch, bc),
            style: self.styles.as_ref().map(|(s, idx, u)| {
                let s = s.storage::<f32>();
                let base = (b * 2 * c + ch) * u;
                let bb = (b * 2 * c + c + ch) * u;
                (&s[base..base + u], &s[bb..bb + u], &idx[b * hw..(b + 1) * hw])
            }),
            nv: self.nv.storage::<f32>()[ch],
            scale: self.scale.storage::<f32>()[ch],
            shift: self.shift.storage::<f32>()[ch],
        }
    }
}

#[allow(clippy::type_complexity)]
struct Plane<'a> {
    x: &'a [f32],
    noise: Option<&'a [f32]>,
    gamma: &'a [f32],
    beta: &'a [f32],
    style: Option<(&'a [f32], &'a [f32], &'a [u32])>,
    nv: f32,
    scale: f32,
    shift: f32,
}

impl Plane<'_> {
    /// `(xin, xn, gam, o)` at pixel `p`.
    #[inline(always)]
    fn at(&self, p: usize) -> (f32, f32, f32, f32) {
        let xin = match self.noise {
            Some(n) => self.x[p] + n[p] * self.nv,
            None => self.x[p],
        };
        let xn = xin * self.scale + self.shift;
        let (sg, sb) = match self.style {
            Some((g, b, idx)) => {
                let u = idx[p] as usize;
                (g[u], b[u])
            }
            None => (0.0, 0.0),
        };
        let gam = 1.0 + self.gamma[p] + sg;
        (xin, xn, gam, xn * gam + self.beta[p] + sb)
    }
}

/// Forward: `[B, C, H, W]`.
pub fn forward(i: &AceInputs<burn::backend::Flex>) -> FlexTensor {
    let v = View::new(i);
    let [b, c, h, w] = v.dims;
    let hw = h * w;
    let mut out = vec![0f32; b * c * hw];
    out.par_chunks_mut(hw).enumerate().for_each(|(bc, dst)| {
        let pl = v.plane(bc);
        for (p, d) in dst.iter_mut().enumerate() {
            let o = pl.at(p).3;
            *d = if v.leaky && o < 0.0 { 0.2 * o } else { o };
        }
    });
    FlexTensor::from_data(TensorData::new(out, Shape::new([b, c, h, w])))
}

struct PlaneGrads {
    style: Option<(Vec<f32>, Vec<f32>)>,
    maps: Option<(Vec<f32>, Vec<f32>)>,
    sums: [f32; 3],
}

/// Backward (see [`super::AceKernels::ace_modulate_backward`]).
pub fn backward(grad: FlexTensor, i: &AceInputs<burn::backend::Flex>, maps: bool) -> AceGrads<burn::backend::Flex> {
    let v = View::new(i);
    let g = f32s(&grad);
    let g = g.storage::<f32>();
    let [b, c, h, w] = v.dims;
    let hw = h * w;
    let u = v.styles.as_ref().map_or(0, |s| s.2);
    let mut gx = vec![0f32; b * c * hw];
    let planes: Vec<PlaneGrads> = gx
        .par_chunks_mut(hw)
        .enumerate()
        .map(|(bc, gx)| {
            let pl = v.plane(bc);
            let gp = &g[bc * hw..(bc + 1) * hw];
            let mut style = pl.style.map(|_| (vec![0f32; u], vec![0f32; u]));
            let mut mp = maps.then(|| (vec![0f32; hw], vec![0f32; hw]));
            // Per-channel sums in 8 independent lanes (no serial dependency chain), folded
            // in f64 at the end; the style scatter accumulates runs of equal neighbourhoods
            // (consecutive pixels mostly share one) before touching memory.
            let mut lanes = [[0f32; 8]; 3];
            let (mut run, mut run_g, mut run_b) = (usize::MAX, 0f32, 0f32);
            for p in 0..hw {
                let (xin, xn, gam, o) = pl.at(p);
                let go = if v.leaky && o < 0.0 { 0.2 * gp[p] } else { gp[p] };
                let gg = go * gam;
                gx[p] = gg * pl.scale;
                if let (Some((ag, ab)), Some((_, _, idx))) = (style.as_mut(), pl.style) {
                    let k = idx[p] as usize;
                    if k != run {
                        if run != usize::MAX {
                            ag[run] += run_g;
                            ab[run] += run_b;
                        }
                        (run, run_g, run_b) = (k, 0.0, 0.0);
                    }
                    run_g += go * xn;
                    run_b += go;
                }
                if let Some((mg, mb)) = mp.as_mut() {
                    mg[p] = go * xn;
                    mb[p] = go;
                }
                let lane = p & 7;
                if let Some(n) = pl.noise {
                    lanes[0][lane] += gg * pl.scale * n[p];
                }
                lanes[1][lane] += gg * xin;
                lanes[2][lane] += gg;
            }
            if let (Some((ag, ab)), true) = (style.as_mut(), run != usize::MAX) {
                ag[run] += run_g;
                ab[run] += run_b;
            }
            let sums = lanes.map(|l| l.iter().map(|&v| v as f64).sum::<f64>());
            PlaneGrads { style, maps: mp, sums: sums.map(|s| s as f32) }
        })
        .collect();
    let styles = v.styles.as_ref().map(|_| {
        let mut s = vec![0f32; b * 2 * c * u];
        for (bc, pg) in planes.iter().enumerate() {
            let (bi, ch) = (bc / c, bc % c);
            let (ag, ab) = pg.style.as_ref().expect("style gradients");
            s[(bi * 2 * c + ch) * u..(bi * 2 * c + ch + 1) * u].copy_from_slice(ag);
            s[(bi * 2 * c + c + ch) * u..(bi * 2 * c + c + ch + 1) * u].copy_from_slice(ab);
        }
        FlexTensor::from_data(TensorData::new(s, Shape::new([b, 2 * c, u])))
    });
    let map_grads = maps.then(|| {
        let (mut mg, mut mb) = (Vec::with_capacity(b * c * hw), Vec::with_capacity(b * c * hw));
        for pg in &planes {
            let (g, bb) = pg.maps.as_ref().expect("map gradients");
            mg.extend_from_slice(g);
            mb.extend_from_slice(bb);
        }
        let shape = |t: &FlexTensor| t.shape();
        let reduce = |full: Vec<f32>, like: &FlexTensor| {
            // A map held once for the whole batch gets the batch's sum.
            let target = shape(like);
            if target.dims::<4>()[0] == b {
                FlexTensor::from_data(TensorData::new(full, Shape::new([b, c, h, w])))
            } else {
                let mut s = vec![0f32; c * hw];
                for chunk in full.chunks(c * hw) {
                    s.iter_mut().zip(chunk).for_each(|(a, v)| *a += v);
                }
                FlexTensor::from_data(TensorData::new(s, Shape::new([1, c, h, w])))
            }
        };
        (reduce(mg, &v.gamma), reduce(mb, &v.beta))
    });
    let mut channels = [vec![0f32; c], vec![0f32; c], vec![0f32; c]];
    for (bc, pg) in planes.iter().enumerate() {
        for (ch, sum) in channels.iter_mut().zip(pg.sums) {
            ch[bc % c] += sum;
        }
    }
    let [cnv, cs, ct] = channels.map(|v| FlexTensor::from_data(TensorData::new(v, Shape::new([c]))));
    let (gamma, beta) = match map_grads {
        Some((g, b)) => (Some(g), Some(b)),
        None => (None, None),
    };
    AceGrads {
        x: FlexTensor::from_data(TensorData::new(gx, Shape::new([b, c, h, w]))),
        styles,
        gamma,
        beta,
        channels: [cnv, cs, ct],
    }
}
