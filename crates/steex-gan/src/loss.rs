//! The GAN losses of the published training (`loss.py` `GANLoss` with `gan_mode hinge`,
//! `pix2pix_model.py` `compute_generator_loss` / `compute_discriminator_loss`).
//!
//! `GANLoss.__call__` on the multiscale output takes each discriminator's *last* map, its
//! loss (a mean over the map), and averages over the `num_D` discriminators. Feature matching
//! is the L1 distance between every intermediate map (all but the prediction) on the fake
//! and on the real image (the real one detached), times `lambda_feat / num_D`, summed.

use burn::tensor::Tensor;
use burn::tensor::activation::relu;

/// The output of a multiscale discriminator: per discriminator, its layer groups' maps, the
/// prediction last.
pub type Features = Vec<Vec<Tensor<4>>>;

/// `divide_pred`: the maps of a batch `cat([fake, real])` split into those of the fake half
/// and of the real half.
pub fn split_fake_real(out: Features) -> (Features, Features) {
    let mut fake = Vec::with_capacity(out.len());
    let mut real = Vec::with_capacity(out.len());
    for maps in out {
        let (f, r): (Vec<_>, Vec<_>) = maps
            .into_iter()
            .map(|t| {
                let [b, c, h, w] = t.dims();
                (t.clone().slice([0..b / 2, 0..c, 0..h, 0..w]), t.slice([b / 2..b, 0..c, 0..h, 0..w]))
            })
            .unzip();
        fake.push(f);
        real.push(r);
    }
    (fake, real)
}

/// The mean over discriminators of `per_map(prediction)`, each a `[1]` mean.
fn over_discriminators(preds: &Features, per_map: impl Fn(Tensor<4>) -> Tensor<1>) -> Tensor<1> {
    let n = preds.len();
    let mut preds = preds.iter().filter_map(|maps| maps.last());
    let first = per_map(preds.next().expect("at least one discriminator").clone());
    preds.fold(first, |acc, p| acc + per_map(p.clone())).div_scalar(n as f64)
}

/// The discriminator's hinge loss on real images (`D_real`): `mean(relu(1 - D(real)))`
/// per discriminator (the published `-mean(min(x - 1, 0))`), averaged over them. `[1]`.
pub fn hinge_d_real(preds: &Features) -> Tensor<1> {
    over_discriminators(preds, |p| relu(p.neg().add_scalar(1.0)).mean())
}

/// The discriminator's hinge loss on generated images (`D_Fake`): `mean(relu(1 + D(fake)))`
/// per discriminator (the published `-mean(min(-x - 1, 0))`), averaged over them. `[1]`.
pub fn hinge_d_fake(preds: &Features) -> Tensor<1> {
    over_discriminators(preds, |p| relu(p.add_scalar(1.0)).mean())
}

/// The generator's hinge loss (`GAN`): `-mean(D(fake))` per discriminator, averaged over
/// them. `[1]`.
pub fn hinge_g(preds_fake: &Features) -> Tensor<1> {
    over_discriminators(preds_fake, |p| p.mean().neg())
}

/// The discriminator's mean prediction: the mean of each discriminator's last map, averaged
/// over them (logged during training: how real it finds a batch). `[1]`.
pub fn mean_prediction(preds: &Features) -> Tensor<1> {
    over_discriminators(preds, |p| p.mean())
}

/// `GAN_Feat`: `sum_i sum_{j < last} L1(fake[i][j], real[i][j].detach()) * lambda_feat /
/// num_D` (L1 a mean over elements). `[1]`.
pub fn feature_matching(fake: &Features, real: &Features, lambda_feat: f64) -> Tensor<1> {
    let num_d = fake.len() as f64;
    let mut total: Option<Tensor<1>> = None;
    for (f, r) in fake.iter().zip(real) {
        let inner = f.len().saturating_sub(1);
        for (fj, rj) in f.iter().zip(r).take(inner) {
            let l = (fj.clone() - rj.clone().detach()).abs().mean().mul_scalar(lambda_feat / num_d);
            total = Some(match total {
                Some(t) => t + l,
                None => l,
            });
        }
    }
    total.expect("at least one intermediate feature map")
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;

    fn t(v: Vec<f32>, shape: [usize; 4]) -> Tensor<4> {
        Tensor::from_data(TensorData::new(v, shape), &Device::flex())
    }

    fn scalar(x: Tensor<1>) -> f32 {
        steex_nn::host(x)[0]
    }

    /// Hinge terms from their definitions on small maps of two discriminators (different
    /// sizes, so the per-discriminator mean matters), and the fake/real split by halves.
    #[test]
    fn hinge_terms_average_the_last_maps_of_each_discriminator() {
        let d0 = vec![t(vec![9.0; 4], [2, 1, 1, 2]), t(vec![0.5, -2.0, 1.5, 0.0], [2, 1, 1, 2])];
        let d1 = vec![t(vec![7.0; 2], [2, 1, 1, 1]), t(vec![-0.5, 3.0], [2, 1, 1, 1])];
        let (fake, real) = split_fake_real(vec![d0, d1]);
        assert_eq!(steex_nn::host(fake[0][1].clone()), vec![0.5, -2.0]);
        assert_eq!(steex_nn::host(real[1][1].clone()), vec![3.0]);
        // real: D0 [1.5, 0] -> relu(1 - x) = [0, 1] mean 0.5; D1 [3] -> 0; average 0.25.
        assert!((scalar(hinge_d_real(&real)) - 0.25).abs() < 1e-6);
        // fake: D0 [0.5, -2] -> relu(1 + x) = [1.5, 0] mean 0.75; D1 [-0.5] -> 0.5; 0.625.
        assert!((scalar(hinge_d_fake(&fake)) - 0.625).abs() < 1e-6);
        // G: -(mean(-0.75) + (-0.5)) / 2 = 0.625.
        assert!((scalar(hinge_g(&fake)) - 0.625).abs() < 1e-6);
        // Feature matching uses only the first maps (both 9 vs 9 and 7 vs 7): zero.
        assert_eq!(scalar(feature_matching(&fake, &real, 10.0)), 0.0);
        let f = vec![vec![t(vec![1.0, 3.0], [1, 1, 1, 2]), t(vec![100.0], [1, 1, 1, 1])]];
        let r = vec![vec![t(vec![0.0, 0.0], [1, 1, 1, 2]), t(vec![-100.0], [1, 1, 1, 1])]];
        assert!((scalar(feature_matching(&f, &r, 10.0)) - 20.0).abs() < 1e-5);
    }
}
