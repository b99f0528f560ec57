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
///
/// Only the `P` labels that occur in the maps at this size take part ([`Self::labels`]): a
/// label absent from every neighbourhood contributes nothing to the convolution, so its
/// per-tap responses are neither computed nor multiplied (at the generator's coarse sizes
/// most labels vanish: a face mask at 4 x 4 holds a handful of its 19 labels).
#[derive(Debug, Clone)]
pub struct Neighbourhoods {
    /// `[9 P, U]`: column `u` has a 1 at row `t P + i` when tap `t` (`3 r + c`, row offset
    /// `r - 1`, column offset `c - 1`) of neighbourhood `u` has label `labels[i]`, and 0 in
    /// the rows of its taps that fall outside the image.
    pub patterns: Tensor<2>,
    /// The labels that occur (ascending; label 0 alone when none does, so that no tensor is
    /// empty): `P` of them.
    pub labels: Vec<usize>,
    /// [`Self::labels`] as a tensor, for [`Self::present`].
    pub label_index: Tensor<1, Int>,
    /// The number of labels of the maps (`L`).
    pub label_count: usize,
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
        let mut seen = vec![false; l];
        for &v in ids.keys().flatten() {
            if v >= 0 {
                seen[v as usize] = true;
            }
        }
        let mut labels: Vec<usize> = (0..l).filter(|&j| seen[j]).collect();
        if labels.is_empty() {
            labels.push(0);
        }
        let p = labels.len();
        let mut row_of = vec![0; l];
        for (i, &j) in labels.iter().enumerate() {
            row_of[j] = i;
        }
        let mut patterns = vec![0f32; 9 * p * u];
        for (key, col) in ids {
            for (t, &v) in key.iter().enumerate() {
                if v >= 0 {
                    patterns[(t * p + row_of[v as usize]) * u + col] = 1.0;
                }
            }
        }
        let batch_index = Tensor::stack(index.clone(), 0);
        let ids: Vec<i64> = labels.iter().map(|&j| j as i64).collect();
        Neighbourhoods {
            patterns: Tensor::from_data(TensorData::new(patterns, [9 * p, u]), device),
            label_index: Tensor::from_data(TensorData::new(ids, [p]), device),
            labels,
            label_count: l,
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
            labels: self.labels.clone(),
            label_index: self.label_index.clone(),
            label_count: self.label_count,
            batch_index: Tensor::stack(index.clone(), 0),
            index,
            size: self.size,
        }
    }

    /// The per-label rows `[B, P, S]` of `v` `[B, L, S]` that take part: those of
    /// [`Self::labels`] (`v` itself when every label does).
    ///
    /// # Shapes
    /// - `v`: `[B, L, S]`
    /// - output: `[B, P, S]`
    pub fn present(&self, v: Tensor<3>) -> Tensor<3> {
        if self.labels.len() == self.label_count { v } else { v.select(1, self.label_index.clone()) }
    }

    /// The responses per neighbourhood `[B, K, U]` of per-tap responses `q` `[B, K, 9 P]`
    /// to the present labels' vectors: the convolution before its gather (see
    /// [`Self::convolve`]).
    pub fn per_pattern(&self, q: Tensor<3>) -> Tensor<3> {
        q.matmul(self.patterns.clone().unsqueeze_dim::<3>(0))
    }

    /// The 3x3 convolution (no bias) of the style map with per-tap responses `q`
    /// `[B, K, 9 P]` to the present labels' vectors (`q[b, k, t P + i] = (W_t v_{b, j})_k`,
    /// `j = labels[i]`; see [`Self::present`]).
    ///
    /// # Shapes
    /// - `q`: `[B, K, 9 P]`
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
        // Values `l` (and label 2, mapped to it) are no label: one label is absent.
        let labels: Vec<i64> = (0..b * h * w)
            .map(|i| ((i * 7 + i / 5) % (l + 1)) as i64)
            .map(|v| if v == 2 { l as i64 } else { v })
            .collect();
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
        // Only the labels that occur take part, in order: q's columns t P + i.
        let p = nb.labels.len();
        assert!(p < l, "the test map leaves a label out");
        let cols: Vec<i64> = (0..9).flat_map(|t| nb.labels.iter().map(move |&j| (t * l + j) as i64)).collect();
        let q = q.select(2, Tensor::<1, Int>::from_data(TensorData::new(cols, [9 * p]), &device));
        let diff: f32 = (nb.convolve(q) - direct).abs().max().into_scalar();
        assert!(diff < 1e-5, "differs by {diff}");
    }
}
