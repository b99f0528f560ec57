//! The distinct 3x3 label neighbourhoods of a label map, for the fast path's style
//! convolutions.
//!
//! A 3x3 convolution of the per-label style map `M = sum_j onehot_j v_j^T` gives, at pixel
//! `p`, `sum_t q[t, label(p + off_t)]` with `q[t, j] = W_t v_j` (zero for taps outside the
//! image). It depends on the pixel only through its neighbourhood's 9 labels, and a
//! segmentation map has few distinct neighbourhoods (one per label inside the regions, a
//! few hundred along their borders). So the convolution is a product with the `U` distinct
//! neighbourhoods (`[2C, 9 L] x [9 L, U]`) and a gather of one column per pixel: exact, with
//! a fraction of the multiplications of the convolution of the L-channel one-hot map.

use std::collections::HashMap;

use burn::tensor::{Device, Int, Tensor, TensorData};

/// The neighbourhoods of a batch of label maps at one size.
#[derive(Debug, Clone)]
pub struct Neighbourhoods {
    /// `[9 L, U]`: column `u` has a 1 at row `t L + j` when tap `t` (`3 i + j`, row offset
    /// `i - 1`, column offset `j - 1`) of neighbourhood `u` has label `j`, and 0 in the
    /// rows of its taps that fall outside the image.
    pub patterns: Tensor<2>,
    /// Per image, `[H W]`: the neighbourhood of every pixel (row-major).
    pub index: Vec<Tensor<1, Int>>,
    /// The same, stacked: `[B, H W]`.
    pub batch_index: Tensor<2, Int>,
    /// `[H, W]`.
    pub size: [usize; 2],
}

impl Neighbourhoods {
    /// The neighbourhoods of label maps `labels` (`B` images, row-major `[H, W]` each, ids
    /// in `0..l`; other values count as no label).
    pub fn new(labels: &[i64], batch: usize, [h, w]: [usize; 2], l: usize, device: &Device) -> Self {
        let mut ids: HashMap<[i64; 9], usize> = HashMap::new();
        let mut index = Vec::with_capacity(batch);
        for img in labels.chunks(h * w).take(batch) {
            let mut idx = Vec::with_capacity(h * w);
            for y in 0..h as isize {
                for x in 0..w as isize {
                    let mut key = [-1i64; 9];
                    for (t, k) in key.iter_mut().enumerate() {
                        let (yy, xx) = (y + t as isize / 3 - 1, x + t as isize % 3 - 1);
                        if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                            let v = img[yy as usize * w + xx as usize];
                            if (0..l as i64).contains(&v) {
                                *k = v;
                            }
                        }
                    }
                    let n = ids.len();
                    idx.push(*ids.entry(key).or_insert(n) as i64);
                }
            }
            index.push(Tensor::<1, Int>::from_data(TensorData::new(idx, [h * w]), device));
        }
        let u = ids.len();
        let mut patterns = vec![0f32; 9 * l * u];
        for (key, col) in ids {
            for (t, &v) in key.iter().enumerate() {
                if v >= 0 {
                    patterns[(t * l + v as usize) * u + col] = 1.0;
                }
            }
        }
        let batch_index = Tensor::stack(index.clone(), 0);
        Neighbourhoods {
            patterns: Tensor::from_data(TensorData::new(patterns, [9 * l, u]), device),
            index,
            batch_index,
            size: [h, w],
        }
    }

    /// Number of distinct neighbourhoods.
    pub fn count(&self) -> usize {
        self.patterns.dims()[1]
    }

    /// The neighbourhoods of images `rows` of the batch.
    pub fn select(&self, rows: &[usize]) -> Self {
        let index: Vec<_> = rows.iter().map(|&r| self.index[r].clone()).collect();
        Neighbourhoods {
            patterns: self.patterns.clone(),
            batch_index: Tensor::stack(index.clone(), 0),
            index,
            size: self.size,
        }
    }

    /// The responses per neighbourhood `[B, K, U]` of per-tap, per-label responses `q`
    /// `[B, K, 9 L]`: the convolution before its gather (see [`Self::convolve`]).
    pub fn per_pattern(&self, q: Tensor<3>) -> Tensor<3> {
        q.matmul(self.patterns.clone().unsqueeze_dim::<3>(0))
    }

    /// The 3x3 convolution (no bias) of the style map with per-tap, per-label responses
    /// `q` `[B, K, 9 L]` (`q[b, k, t L + j] = (W_t v_{b, j})_k`).
    ///
    /// # Shapes
    /// - `q`: `[B, K, 9 L]`
    /// - output: `[B, K, H, W]`
    pub fn convolve(&self, q: Tensor<3>) -> Tensor<4> {
        let [b, k, _] = q.dims();
        let [h, w] = self.size;
        let u = self.count();
        let per_pattern = self.per_pattern(q);
        let images: Vec<Tensor<2>> = (0..b)
            .map(|i| per_pattern.clone().slice([i..i + 1, 0..k, 0..u]).reshape([k, u]).select(1, self.index[i].clone()))
            .collect();
        Tensor::stack::<3>(images, 0).reshape([b, k, h, w])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Distribution, Tensor};

    #[test]
    fn equals_the_convolution_of_the_one_hot_map() {
        let device = Device::flex();
        let (b, l, k, h, w) = (2, 4, 3, 7, 6);
        let labels: Vec<i64> = (0..b * h * w).map(|i| ((i * 7 + i / 5) % (l + 1)) as i64).collect();
        let nb = Neighbourhoods::new(&labels, b, [h, w], l, &device);
        assert!(nb.count() > 1);
        let lab = Tensor::<3, Int>::from_data(TensorData::new(labels, [b, h, w]), &device);
        let onehot = crate::mask::one_hot(lab, l);
        // A kernel per image: q[b, k, t l + j] is the weight of channel j at tap t.
        let q = Tensor::<3>::random([b, k, 9 * l], Distribution::Normal(0.0, 1.0), &device);
        let kernels = q.clone().reshape([b, k, 9, l]).swap_dims(2, 3).reshape([b * k, l, 3, 3]);
        let direct =
            conv2d(onehot.reshape([1, b * l, h, w]), kernels, None, ConvOptions::new([1, 1], [1, 1], [1, 1], b))
                .reshape([b, k, h, w]);
        let diff: f32 = (nb.convolve(q) - direct).abs().max().into_scalar();
        assert!(diff < 1e-5, "differs by {diff}");
    }
}
