//! Tests of the metrics against values computed by hand and by pytorch-fid's formulas.

use nalgebra::{DMatrix, DVector};

use crate::*;

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[test]
fn proximity_of_known_difference() {
    let q = [0.0, 0.5, 1.0, 0.25];
    let c = [0.5, 0.5, 0.0, 0.25];
    let p = proximity(&q, &c).unwrap();
    assert!((p.l1 - 1.5 / 4.0).abs() < 1e-12);
    assert!((p.l2 - (1.25f64 / 4.0).sqrt()).abs() < 1e-12);
    assert!(matches!(proximity(&q, &c[..3]), Err(MetricsError::Size { .. })));
    assert!(matches!(proximity(&[f32::NAN], &[0.0]), Err(MetricsError::NotFinite { .. })));
}

#[test]
fn code_change_counts_moved_rows() {
    let a = [0.0, 0.0, 1.0, 1.0, 2.0, 2.0];
    let b = [3.0, 4.0, 1.0, 1.0, 2.0, 2.0];
    let c = code_change(&a, &b, 2, 1e-6).unwrap();
    assert_eq!(c.regions_changed, 1);
    assert!((c.distance - 5.0).abs() < 1e-12);
    assert!(code_change(&a, &b, 4, 1e-6).is_err());
}

#[test]
fn success_tally_per_attribute() {
    let mut t = SuccessTally::default();
    assert_eq!(t.rate(), None);
    t.add(true, Some("smile"));
    t.add(false, Some("smile"));
    t.add(true, Some("young"));
    assert!((t.rate().unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(t.per_attribute_rates(), vec![("smile".into(), 0.5), ("young".into(), 1.0)]);
}

#[test]
fn covariance_matches_definition() {
    let x = [1.0, 2.0, 3.0, 5.0, 5.0, 11.0];
    let (m, s) = mean_and_covariance(&x, 2).unwrap();
    assert!((m[0] - 3.0).abs() < 1e-12 && (m[1] - 6.0).abs() < 1e-12);
    // var(1,3,5) = 4, var(2,5,11) = 21, cov = ((-2)(-4) + 0 + 2*5)/2 = 9.
    assert!((s[(0, 0)] - 4.0).abs() < 1e-12 && (s[(1, 1)] - 21.0).abs() < 1e-12);
    assert!((s[(0, 1)] - 9.0).abs() < 1e-12 && (s[(1, 0)] - 9.0).abs() < 1e-12);
    assert!(mean_and_covariance(&x[..2], 2).is_err());
}

#[test]
fn frechet_distance_closed_forms() {
    // Identical distributions: 0.
    let f = values(300 * 5, 1);
    assert!(fid_from_features(&f, &f, 5).unwrap().abs() < 1e-9);
    // Diagonal covariances: sum (m1-m2)^2 + (sqrt(a) - sqrt(b))^2.
    let mu1 = DVector::from_vec(vec![0.0, 1.0]);
    let mu2 = DVector::from_vec(vec![1.0, 3.0]);
    let s1 = DMatrix::from_diagonal(&DVector::from_vec(vec![4.0, 9.0]));
    let s2 = DMatrix::from_diagonal(&DVector::from_vec(vec![1.0, 16.0]));
    let d = frechet_distance(&mu1, &s1, &mu2, &s2).unwrap();
    assert!((d - (1.0 + 4.0 + 1.0 + 1.0)).abs() < 1e-9, "{d}");
    // A shift of the mean by v adds |v|^2.
    let g: Vec<f32> = f.chunks(5).flat_map(|r| r.iter().enumerate().map(|(i, v)| v + i as f32)).collect();
    let d = fid_from_features(&f, &g, 5).unwrap();
    assert!((d - (0.0 + 1.0 + 4.0 + 9.0 + 16.0)).abs() < 1e-6, "{d}");
}

#[test]
fn fva_counts_similar_pairs_not_distant_ones() {
    // Pairs: identical (similarity 1), opposite (-1), 1/sqrt(5) ~ 0.447 and 0.6: two above 0.5.
    let q = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
    let c = [2.0, 0.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0];
    assert!((fva(&q, &c, 2).unwrap() - 0.5).abs() < 1e-12);
    assert!(fva(&q, &c[..4], 2).is_err());
}

#[test]
fn mnac_skips_the_target() {
    let q = [1.0, -1.0, 2.0, 0.5, 1.0, 1.0];
    let c = [-1.0, -2.0, -2.0, 0.5, 1.0, 1.0];
    assert_eq!(attribute_changes(&q[..3], &c[..3], None).unwrap(), 2);
    assert_eq!(attribute_changes(&q[..3], &c[..3], Some(0)).unwrap(), 1);
    assert!((mnac(&q, &c, 3, &[Some(2), None]).unwrap() - 0.5).abs() < 1e-12);
    assert!(mnac(&q, &c, 3, &[None]).is_err());
}

#[test]
fn summary_table_marks_missing() {
    let mut s = SuccessTally::default();
    s.add(true, Some("smile"));
    let mut p = ProximityTally::default();
    p.add_pixels(Proximity { l1: 0.5, l2: 0.25 });
    let sum = Summary::from_tallies(1, &s, &p);
    let t = sum.table();
    assert!(t.contains("success rate") && t.contains("1.0000") && t.contains("0.5000"));
    assert!(t.lines().any(|l| l.starts_with("FID") && l.trim_end().ends_with('-')));
}
