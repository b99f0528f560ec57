//! Adam on the host, with PyTorch's update order (`torch.optim.Adam`, no weight decay,
//! no amsgrad), so that float32 results follow the reference step for step.

/// Adam hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AdamConfig {
    /// Learning rate (0.01 in STEEX).
    pub lr: f64,
    /// First-moment decay (0.9).
    pub beta1: f64,
    /// Second-moment decay (0.999).
    pub beta2: f64,
    /// Denominator epsilon (1e-8).
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// Moment estimates of one parameter vector.
#[derive(Debug, Clone)]
pub struct Adam {
    config: AdamConfig,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    /// Zero moments for `n` values.
    pub fn new(config: AdamConfig, n: usize) -> Self {
        Adam { config, m: vec![0.0; n], v: vec![0.0; n] }
    }

    /// Applies update number `step` (1-based) to the values `range` of `x` with gradient
    /// `g` (same indices).
    pub fn update(&mut self, x: &mut [f32], g: &[f32], range: std::ops::Range<usize>, step: usize) {
        let c = self.config;
        let (b1, b2) = (c.beta1 as f32, c.beta2 as f32);
        let bc1 = 1.0 - c.beta1.powi(step as i32);
        let bc2 = 1.0 - c.beta2.powi(step as i32);
        let step_size = (c.lr / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let eps = c.eps as f32;
        for i in range {
            let gi = g[i];
            // exp_avg.lerp_(grad, 1 - beta1)
            let w = 1.0 - b1;
            self.m[i] += w * (gi - self.m[i]);
            // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            self.v[i] = self.v[i] * b2 + (1.0 - b2) * gi * gi;
            let denom = self.v[i].sqrt() / bc2_sqrt + eps;
            x[i] -= step_size * (self.m[i] / denom);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_moves_by_about_lr_times_sign() {
        let mut a = Adam::new(AdamConfig::default(), 3);
        let mut x = vec![1.0, 1.0, 1.0];
        a.update(&mut x, &[2.0, -0.001, 0.0], 0..3, 1);
        assert!((x[0] - 0.99).abs() < 1e-6, "{x:?}");
        assert!((x[1] - 1.01).abs() < 1e-5, "{x:?}");
        assert_eq!(x[2], 1.0);
        // A range leaves the rest untouched.
        let mut y = vec![5.0, 5.0];
        a.update(&mut y, &[1.0, 1.0], 1..2, 2);
        assert_eq!(y[0], 5.0);
    }
}
