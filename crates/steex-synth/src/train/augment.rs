//! Appearances swapped, blended and perturbed while the models train, and noise on codes.

use burn::tensor::{Int, Tensor, TensorData};

use rand::Rng;

use crate::scene::{CAUSAL, HEIGHT, REGIONS, Scene, SceneSpec, WIDTH};

/// Which scene each region's appearance comes from, per scene of a batch: `source[i][k]` is
/// the batch index whose region `k` scene `i` wears (`i` itself when not swapped).
#[derive(Debug, Clone, PartialEq)]
pub struct SwapPlan {
    /// `[B][L]` source scene indices.
    pub source: Vec<[usize; REGIONS.len()]>,
    /// `[B][L]` how much of the source's appearance (and code) a region takes: 1 for a full
    /// swap, between 0 and 1 for a blend of its own and the source's.
    pub share: Vec<[f32; REGIONS.len()]>,
}

impl SwapPlan {
    /// Every scene wears its own appearances.
    pub fn identity(b: usize) -> Self {
        SwapPlan { source: (0..b).map(|i| [i; REGIONS.len()]).collect(), share: vec![[1.0; REGIONS.len()]; b] }
    }

    /// Each region of each scene takes the appearance of another scene of the batch with
    /// probability `p[k]` (the partner is drawn per region).
    pub fn random(b: usize, p: [f64; REGIONS.len()], rng: &mut impl Rng) -> Self {
        let mut plan = Self::identity(b);
        if b < 2 {
            return plan;
        }
        for (i, row) in plan.source.iter_mut().enumerate() {
            for (k, src) in row.iter_mut().enumerate() {
                if rng.random_bool(p[k]) {
                    let j = rng.random_range(0..b - 1);
                    *src = if j >= i { j + 1 } else { j };
                }
            }
        }
        plan
    }

    /// Turns each swap into a blend with probability `p` (the source's share drawn uniformly
    /// from (0, 1)): the generator then learns codes between scenes' codes, which an
    /// explanation walks through, as the appearances between theirs.
    pub fn with_blends(mut self, p: f64, rng: &mut impl Rng) -> Self {
        for (i, (row, share)) in self.source.iter().zip(&mut self.share).enumerate() {
            for (src, w) in row.iter().zip(share.iter_mut()) {
                if *src != i && rng.random_bool(p) {
                    *w = rng.random_range(0.0..1.0);
                }
            }
        }
        self
    }

    /// The scenes as the plan dresses them: scene `i`'s layout with the appearances of the
    /// sources (rendered: the exact target for generating from swapped codes, and the
    /// rule's decision for it).
    pub fn apply(&self, specs: &[SceneSpec]) -> Vec<Scene> {
        self.source
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let mut s = specs[i];
                for (k, &src) in row.iter().enumerate() {
                    s.appearance[k] = specs[i].appearance[k].lerp(&specs[src].appearance[k], self.share[i][k]);
                }
                s.render()
            })
            .collect()
    }

    /// The codes `[B, L, S]` as the plan dresses them: row `(i, k)` is row `(source[i][k], k)`
    /// of `z`, blended with its own by `share[i][k]` (differentiable).
    pub fn mix_codes(&self, z: Tensor<3>) -> Tensor<3> {
        let [b, l, s] = z.dims();
        let device = z.device();
        let idx: Vec<i64> =
            self.source.iter().flat_map(|row| row.iter().enumerate().map(|(k, &src)| (src * l + k) as i64)).collect();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [b * l]), &device);
        let theirs = z.clone().reshape([b * l, s]).select(0, idx).reshape([b, l, s]);
        if self.share.iter().flatten().all(|&w| w == 1.0) {
            return theirs;
        }
        let w = Tensor::<3>::from_data(TensorData::new(self.share.concat(), [b, l, 1]), &device);
        z * w.clone().neg().add_scalar(1.0) + theirs * w
    }
}

/// Per pixel of a label map `[H, W]`: whether a pixel of another label lies within `d`
/// pixels (Chebyshev distance).
pub fn near_border(labels: &[u8], d: usize) -> Vec<bool> {
    let mut out = vec![false; labels.len()];
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let k = labels[y * WIDTH + x];
            let (y0, y1) = (y.saturating_sub(d), (y + d).min(HEIGHT - 1));
            let (x0, x1) = (x.saturating_sub(d), (x + d).min(WIDTH - 1));
            out[y * WIDTH + x] = (y0..=y1).any(|yy| (x0..=x1).any(|xx| labels[yy * WIDTH + xx] != k));
        }
    }
    out
}

/// How the decision model's training batches are made with a generator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassifierAugment {
    /// Share of each batch that is generated (the rest are real scenes).
    pub generated: f64,
    /// Per region, probability that a generated scene wears another scene's code for it
    /// (the label follows the lamp's source).
    pub swap: [f64; 5],
    /// Probability that such a swap is a blend ([`SwapPlan::with_blends`]; the label
    /// follows the blended lamp).
    pub blend: f64,
    /// Gaussian noise added to the non-causal regions' codes of generated scenes: its
    /// standard deviation is drawn per scene from `[0, noise]`.
    pub noise: f64,
    /// Adversarial training on the non-causal pixels: `(radius, steps)` of a projected sign
    /// gradient ascent (L-infinity ball, images in [-1, 1]) on every pixel outside the
    /// causal regions; the model then trains on the perturbed batch. `(0, 0)`: off.
    pub adversarial: (f64, usize),
}

impl Default for ClassifierAugment {
    /// The bundled recipe's: three quarters generated, every region swapped half the time
    /// (half of the swaps blends), noise up to 1.0, adversarial radius 0.15 in 2 steps.
    fn default() -> Self {
        ClassifierAugment {
            generated: 0.75,
            swap: [0.5, 0.5, 0.5, 0.5, 0.5],
            blend: 0.5,
            noise: 1.0,
            adversarial: (0.15, 2),
        }
    }
}

/// Gaussian noise for the non-causal rows of codes `[B, L, S]`, its deviation drawn per
/// scene from `[0, max]`; zero on the causal rows.
pub(crate) fn code_noise(z: &Tensor<3>, max: f64, rng: &mut impl Rng) -> Tensor<3> {
    let [b, l, _] = z.dims();
    let rows: Vec<Vec<bool>> = (0..b).map(|_| (0..l).map(|k| !CAUSAL.contains(&k)).collect()).collect();
    region_noise(z, &rows, max, rng)
}

/// Gaussian noise for the rows `(i, k)` of codes `[B, L, S]` where `rows[i][k]`, its
/// deviation drawn per scene from `[0, max]`; zero elsewhere.
pub(crate) fn region_noise(z: &Tensor<3>, rows: &[Vec<bool>], max: f64, rng: &mut impl Rng) -> Tensor<3> {
    let [b, l, s] = z.dims();
    let mut v = vec![0f32; b * l * s];
    if max > 0.0 {
        for i in 0..b {
            let sd: f64 = rng.random_range(0.0..max);
            for k in (0..l).filter(|&k| rows[i][k]) {
                for x in &mut v[(i * l + k) * s..(i * l + k + 1) * s] {
                    let e: f64 = rng.sample(rand_distr::StandardNormal);
                    *x = (e * sd) as f32;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(v, [b, l, s]), &z.device())
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::scene::LAMP;

    #[test]
    fn swap_plans_dress_scenes_and_codes_alike() {
        let specs: Vec<SceneSpec> = (0..4).map(SceneSpec::sample).collect();
        let mut rng = StdRng::seed_from_u64(1);
        let plan = SwapPlan::random(4, [1.0, 0.0, 0.0, 0.0, 1.0], &mut rng);
        for (i, row) in plan.source.iter().enumerate() {
            assert_ne!(row[0], i, "sky always swapped, from another scene");
            assert_ne!(row[4], i, "lamp always swapped");
            assert_eq!(&row[1..4], &[i, i, i], "the others never");
        }
        let dressed = plan.apply(&specs);
        for (i, s) in dressed.iter().enumerate() {
            // Layout of scene i, appearances of the sources, decision of the lamp's source.
            assert_eq!(s.spec.layout, specs[i].layout);
            assert_eq!(s.spec.appearance[0], specs[plan.source[i][0]].appearance[0]);
            assert_eq!(s.spec.appearance[2], specs[i].appearance[2]);
            assert_eq!(s.stop, specs[plan.source[i][4]].stop());
        }
        // Codes: row (i, k) comes from (source[i][k], k).
        let device = Device::flex();
        let (b, l, s) = (4, REGIONS.len(), 3);
        let z: Vec<f32> = (0..b * l * s).map(|v| v as f32).collect();
        let zt = Tensor::<3>::from_data(TensorData::new(z.clone(), [b, l, s]), &device);
        let mixed = plan.mix_codes(zt).into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        for i in 0..b {
            for k in 0..l {
                let src = plan.source[i][k];
                assert_eq!(&mixed[(i * l + k) * s..(i * l + k + 1) * s], &z[(src * l + k) * s..(src * l + k + 1) * s]);
            }
        }
        assert_eq!(SwapPlan::identity(3).apply(&specs[..3])[1], specs[1].render());
    }

    #[test]
    fn blended_swaps_dress_scenes_and_codes_between_the_two() {
        let specs: Vec<SceneSpec> = (0..4).map(SceneSpec::sample).collect();
        let mut rng = StdRng::seed_from_u64(3);
        let plan = SwapPlan::random(4, [0.0, 0.0, 0.0, 0.0, 1.0], &mut rng).with_blends(1.0, &mut rng);
        let dressed = plan.apply(&specs);
        let device = Device::flex();
        let (b, l, s) = (4, REGIONS.len(), 2);
        let z: Vec<f32> = (0..b * l * s).map(|v| (v * v) as f32 * 0.01).collect();
        let zt = Tensor::<3>::from_data(TensorData::new(z.clone(), [b, l, s]), &device);
        let mixed = plan.mix_codes(zt).into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        for i in 0..b {
            let (src, w) = (plan.source[i][LAMP], plan.share[i][LAMP]);
            assert!(src != i && w > 0.0 && w < 1.0, "scene {i}: source {src}, share {w}");
            assert_eq!(&plan.share[i][..LAMP], &[1.0; LAMP], "unswapped regions keep share 1");
            let (own, theirs) = (specs[i].appearance[LAMP], specs[src].appearance[LAMP]);
            let got = dressed[i].spec.appearance[LAMP];
            for c in 0..3 {
                let want = own.colour[c] + (theirs.colour[c] - own.colour[c]) * w;
                assert!((got.colour[c] - want).abs() < 1e-6, "scene {i} channel {c}");
            }
            assert_eq!(dressed[i].spec.appearance[0], specs[i].appearance[0]);
            // The decision follows the blended colour.
            assert_eq!(dressed[i].stop, crate::scene::is_red(got.colour));
            for k in 0..l {
                for c in 0..s {
                    let own = z[(i * l + k) * s + c];
                    let want = if k == LAMP { own + (z[(src * l + k) * s + c] - own) * w } else { own };
                    let have = mixed[(i * l + k) * s + c];
                    assert!((have - want).abs() < 1e-4 * (1.0 + want.abs()), "({i}, {k}, {c}): {have} vs {want}");
                }
            }
        }
    }

    #[test]
    fn borders_are_found_on_both_sides() {
        let mut labels = vec![0u8; HEIGHT * WIDTH];
        labels[10 * WIDTH + 10] = 1;
        let b = near_border(&labels, 2);
        assert!(b[10 * WIDTH + 10] && b[12 * WIDTH + 8] && b[8 * WIDTH + 12]);
        assert!(!b[13 * WIDTH + 10] && !b[10 * WIDTH + 13] && !b[0]);
        assert_eq!(b.iter().filter(|&&v| v).count(), 25);
    }

    #[test]
    fn code_noise_leaves_the_cause_alone() {
        let device = Device::flex();
        let z = Tensor::<3>::zeros([3, REGIONS.len(), 4], &device);
        let n = code_noise(&z, 0.5, &mut StdRng::seed_from_u64(2)).into_data().try_into_vec::<f32>().unwrap();
        let row = |i: usize, k: usize| &n[(i * REGIONS.len() + k) * 4..(i * REGIONS.len() + k + 1) * 4];
        for i in 0..3 {
            for k in 0..REGIONS.len() {
                let nonzero = row(i, k).iter().any(|v| *v != 0.0);
                assert_eq!(nonzero, !CAUSAL.contains(&k), "scene {i} region {k}");
            }
        }
    }
}
