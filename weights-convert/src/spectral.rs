//! Spectral normalisation resolved at conversion time.
//!
//! SEAN's residual-block convolutions are wrapped in `torch.nn.utils.spectral_norm`, so the
//! checkpoint stores `weight_orig`, `weight_u` and `weight_v` instead of `weight`. In eval
//! mode PyTorch does no power iteration; it uses the stored vectors as they are:
//!
//! ```text
//! W_mat = weight_orig.reshape(out, -1)
//! sigma = dot(u, W_mat @ v)
//! weight = weight_orig / sigma
//! ```
//!
//! The converted file holds that plain `weight`, so no later reader needs to know about
//! spectral norm.

use std::collections::BTreeMap;
use std::path::Path;

use crate::checkpoint::TensorData;
use crate::error::{ConvertError, Result};

/// Replaces every `X.weight_orig` / `X.weight_u` / `X.weight_v` triple of `tensors` by the
/// eval-mode `X.weight`. Returns the prefixes `X` that were resolved, sorted.
///
/// `path` only names the file in error messages.
pub fn resolve_spectral_norm(tensors: &mut BTreeMap<String, TensorData>, path: &Path) -> Result<Vec<String>> {
    let prefixes: Vec<String> =
        tensors.keys().filter_map(|k| k.strip_suffix(".weight_orig").map(str::to_string)).collect();
    for prefix in &prefixes {
        let err =
            |reason: String| ConvertError::SpectralNorm { path: path.to_path_buf(), name: prefix.clone(), reason };
        let take = |tensors: &mut BTreeMap<String, TensorData>, suffix: &str| {
            let name = format!("{prefix}.{suffix}");
            let t = tensors.remove(&name).ok_or_else(|| err(format!("`{name}` is missing")))?;
            t.into_f32().ok_or_else(|| err(format!("`{name}` is not a float tensor")))
        };
        let w = take(tensors, "weight_orig")?;
        let u = take(tensors, "weight_u")?;
        let v = take(tensors, "weight_v")?;
        if tensors.contains_key(&format!("{prefix}.weight")) {
            return Err(err("the checkpoint holds both `weight` and `weight_orig`".into()));
        }
        let weight = eval_mode_weight(&w, &u, &v).map_err(err)?;
        tensors.insert(format!("{prefix}.weight"), weight);
    }
    Ok(prefixes)
}

/// `weight_orig / dot(u, W_mat v)` for one layer (`dim = 0`, as for every non-transposed
/// convolution and linear layer). The dot products are accumulated in float64.
pub fn eval_mode_weight(w: &TensorData, u: &TensorData, v: &TensorData) -> std::result::Result<TensorData, String> {
    let (Some(wv), Some(uv), Some(vv)) = (w.to_f32(), u.to_f32(), v.to_f32()) else {
        return Err("weight_orig, weight_u and weight_v must be float tensors".into());
    };
    let out = *w.shape.first().ok_or("weight_orig is a scalar")?;
    if out == 0 || wv.is_empty() {
        return Err("weight_orig is empty".into());
    }
    let cols = wv.len() / out;
    if uv.len() != out || u.shape.len() != 1 {
        return Err(format!("weight_u has shape {:?}, expected [{out}]", u.shape));
    }
    if vv.len() != cols || v.shape.len() != 1 {
        return Err(format!("weight_v has shape {:?}, expected [{cols}]", v.shape));
    }
    let sigma: f64 = wv
        .chunks_exact(cols)
        .zip(&uv)
        .map(|(row, &ui)| {
            let wv_i: f64 = row.iter().zip(&vv).map(|(&a, &b)| a as f64 * b as f64).sum();
            ui as f64 * wv_i
        })
        .sum();
    if !sigma.is_finite() || sigma == 0.0 {
        return Err(format!("sigma = dot(u, W v) is {sigma}, expected a finite non-zero value"));
    }
    let values: Vec<f32> = wv.iter().map(|&x| (x as f64 / sigma) as f32).collect();
    Ok(TensorData::from_f32(w.shape.clone(), &values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divides_by_u_w_v() {
        // W = [[1, 2], [3, 4]], u = [1, 0], v = [0, 1] -> sigma = W[0][1] = 2.
        let w = TensorData::from_f32(vec![2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let u = TensorData::from_f32(vec![2], &[1.0, 0.0]);
        let v = TensorData::from_f32(vec![2], &[0.0, 1.0]);
        let r = eval_mode_weight(&w, &u, &v).unwrap();
        assert_eq!(r.to_f32().unwrap(), vec![0.5, 1.0, 1.5, 2.0]);
    }

    #[test]
    fn refuses_inconsistent_vectors_and_zero_sigma() {
        let w = TensorData::from_f32(vec![2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let u3 = TensorData::from_f32(vec![3], &[1.0, 0.0, 0.0]);
        let v = TensorData::from_f32(vec![2], &[0.0, 1.0]);
        assert!(eval_mode_weight(&w, &u3, &v).unwrap_err().contains("weight_u"));
        let u0 = TensorData::from_f32(vec![2], &[0.0, 0.0]);
        assert!(eval_mode_weight(&w, &u0, &v).unwrap_err().contains("sigma"));
    }

    #[test]
    fn resolves_triples_and_reports_missing_parts() {
        let mut t = BTreeMap::new();
        t.insert("a.weight_orig".to_string(), TensorData::from_f32(vec![1, 1], &[3.0]));
        t.insert("a.weight_u".to_string(), TensorData::from_f32(vec![1], &[1.0]));
        t.insert("a.weight_v".to_string(), TensorData::from_f32(vec![1], &[0.5]));
        t.insert("a.bias".to_string(), TensorData::from_f32(vec![1], &[0.0]));
        let done = resolve_spectral_norm(&mut t, Path::new("x.pth")).unwrap();
        assert_eq!(done, vec!["a".to_string()]);
        assert_eq!(t.keys().collect::<Vec<_>>(), vec!["a.bias", "a.weight"]);
        assert_eq!(t["a.weight"].to_f32().unwrap(), vec![2.0]);

        let mut t = BTreeMap::new();
        t.insert("b.weight_orig".to_string(), TensorData::from_f32(vec![1, 1], &[3.0]));
        let e = resolve_spectral_norm(&mut t, Path::new("x.pth")).unwrap_err().to_string();
        assert!(e.contains("x.pth") && e.contains("b.weight_u"), "{e}");
    }
}
