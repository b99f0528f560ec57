//! `to-pytorch` for a SEAN generator: a converted (or `steex train generator`-written) file,
//! spectral norm resolved, back to SEAN's `latest_net_G.pth` layout, the state dict itself at
//! the top level as `util.save_network` writes it, with every residual block's `conv_0`,
//! `conv_1`, `conv_s` under spectral norm again (`weight_orig`, `weight_u`, `weight_v`) and
//! the tensors the model never uses (the SPADE branch's batch-norm statistics, `up_3`'s
//! blending weights) at their initial values.
//!
//! Spectral norm in `eval()` convolves with `weight_orig / (u . W v)`. The file holds `W =
//! weight_orig / sigma` with the `u`, `v` training ended with, so `u . W v = 1` for them; they
//! are not in the file, but others are found: `weight_orig = W`, `u`, `v1` from power
//! iteration (`u . W v1` near the largest singular value, at least 1), `v2` a unit vector
//! orthogonal to `v1`, and `v = cos(t) v1 + sin(t) v2` with `t` such that `u . W v = 1`
//! exactly (in float64), so PyTorch's eval weight is `W` up to float32 rounding of `u`, `v`.

use std::collections::BTreeMap;

use crate::to_pytorch::Tensors;

/// The block convolutions under spectral norm.
const SPECTRAL: [&str; 3] = ["conv_0", "conv_1", "conv_s"];

/// `<block>.<conv>` when `name` is a residual block's spectral-normed `weight`.
fn spectral_prefix(name: &str) -> Option<&str> {
    let p = name.strip_suffix(".weight")?;
    let (block, conv) = p.split_once('.')?;
    (!block.contains('.') && block != "Zencoder" && SPECTRAL.contains(&conv)).then_some(p)
}

fn normalize(x: &mut [f64]) {
    let n = x.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
    x.iter_mut().for_each(|a| *a /= n);
}

/// `(u, v)` unit vectors with `u . W v = 1` for `W` `[out, n]` (row-major), or the largest
/// `u . W v` found when below 1 (such a `W` is no spectral norm's output).
pub fn unit_pair(w: &[f32], out: usize, n: usize) -> Result<(Vec<f32>, Vec<f32>), f64> {
    let wd: Vec<f64> = w.iter().map(|&x| x as f64).collect();
    let mv = |v: &[f64]| -> Vec<f64> { (0..out).map(|i| (0..n).map(|j| wd[i * n + j] * v[j]).sum()).collect() };
    let mtu = |u: &[f64]| -> Vec<f64> { (0..n).map(|j| (0..out).map(|i| wd[i * n + j] * u[i]).sum()).collect() };
    let mut v: Vec<f64> = (0..n).map(|j| 1.0 + (j as f64 * 0.618_034).fract()).collect();
    normalize(&mut v);
    let mut u = mv(&v);
    normalize(&mut u);
    for _ in 0..500 {
        v = mtu(&u);
        normalize(&mut v);
        u = mv(&v);
        normalize(&mut u);
    }
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let wv1 = mv(&v);
    let a = dot(&u, &wv1);
    // v2: the basis vector least aligned with v1, made orthogonal to it.
    let k = (0..n).min_by(|&i, &j| v[i].abs().total_cmp(&v[j].abs())).unwrap_or(0);
    let mut v2: Vec<f64> = (0..n).map(|j| if j == k { 1.0 } else { 0.0 } - v[k] * v[j]).collect();
    let b = if n > 1 {
        normalize(&mut v2);
        dot(&u, &mv(&v2))
    } else {
        v2 = vec![0.0];
        0.0
    };
    let r = (a * a + b * b).sqrt();
    if r < 1.0 - 1e-5 {
        return Err(r);
    }
    // a cos t + b sin t = r cos(t - phi) = 1.
    let t = b.atan2(a) + (1.0 / r).min(1.0).acos();
    let (c, s) = (t.cos(), t.sin());
    let vv: Vec<f32> = v.iter().zip(&v2).map(|(x, y)| (c * x + s * y) as f32).collect();
    Ok((u.iter().map(|&x| x as f32).collect(), vv))
}

/// The `latest_net_G.pth` state dict of a converted generator's tensors (`labels` labels).
pub fn training_state_dict(tensors: &Tensors) -> Result<Tensors, String> {
    let mut out = Tensors::new();
    let mut aces: BTreeMap<String, usize> = BTreeMap::new();
    for (name, (shape, values)) in tensors {
        if let Some(p) = spectral_prefix(name) {
            let o = shape[0];
            let n: usize = shape[1..].iter().product();
            let (u, v) = unit_pair(values, o, n)
                .map_err(|r| format!("`{name}`: largest u . W v is {r:.6}, below 1: not a spectral norm's weight"))?;
            out.insert(format!("{p}.weight_orig"), (shape.clone(), values.clone()));
            out.insert(format!("{p}.weight_u"), (vec![o], u));
            out.insert(format!("{p}.weight_v"), (vec![n], v));
        } else {
            if let Some(p) = name.strip_suffix(".noise_var") {
                aces.insert(p.to_string(), shape[0]);
            }
            out.insert(name.clone(), (shape.clone(), values.clone()));
        }
    }
    // The tensors of the published module tree the model never uses, at their initial values.
    for (p, c) in aces {
        out.insert(format!("{p}.Spade.param_free_norm.running_mean"), (vec![c], vec![0.0; c]));
        out.insert(format!("{p}.Spade.param_free_norm.running_var"), (vec![c], vec![1.0; c]));
        for b in ["blending_gamma", "blending_beta"] {
            out.entry(format!("{p}.{b}")).or_insert((vec![1], vec![0.0]));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `u . W v = 1` for a matrix whose largest singular value is above 1, both vectors unit;
    /// one below 1 is refused; the layout adds spectral norm's triples and the unused tensors.
    #[test]
    fn unit_pairs_and_the_layout() {
        let w: Vec<f32> = (0..12).map(|i| ((i * 7) % 5) as f32 * 0.3 - 0.4).collect();
        let (u, v) = unit_pair(&w, 3, 4).unwrap();
        let wv: Vec<f64> = (0..3).map(|i| (0..4).map(|j| w[i * 4 + j] as f64 * v[j] as f64).sum::<f64>()).collect();
        let s: f64 = u.iter().zip(&wv).map(|(a, b)| *a as f64 * b).sum();
        assert!((s - 1.0).abs() < 1e-6, "u . W v = {s}");
        for x in [&u, &v] {
            assert!((x.iter().map(|a| (a * a) as f64).sum::<f64>() - 1.0).abs() < 1e-6);
        }
        assert!(unit_pair(&[0.1, 0.2, 0.0, 0.1], 2, 2).is_err());
        let t: Tensors = [
            ("up_0.conv_s.weight".to_string(), (vec![3, 4, 1, 1], w.clone())),
            ("up_0.ace_s.noise_var".to_string(), (vec![4], vec![0.0; 4])),
            ("fc.weight".to_string(), (vec![3, 4, 1, 1], w)),
        ]
        .into();
        let sd = training_state_dict(&t).unwrap();
        for k in ["up_0.conv_s.weight_orig", "up_0.conv_s.weight_u", "up_0.conv_s.weight_v", "fc.weight"] {
            assert!(sd.contains_key(k), "{k}");
        }
        assert!(!sd.contains_key("up_0.conv_s.weight") && !sd.contains_key("fc.weight_orig"));
        assert_eq!(sd["up_0.ace_s.Spade.param_free_norm.running_var"].1, vec![1.0; 4]);
        assert_eq!(sd["up_0.ace_s.blending_gamma"].1, vec![0.0]);
    }
}
