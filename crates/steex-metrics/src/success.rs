//! Success rate, overall and per attribute.

// Success

/// Counts explanations and flips, overall and per attribute name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SuccessTally {
    /// Explanations counted.
    pub total: usize,
    /// Explanations whose decision flipped.
    pub flipped: usize,
    /// Per attribute name: `(total, flipped)`, sorted by name.
    pub per_attribute: std::collections::BTreeMap<String, (usize, usize)>,
}

impl SuccessTally {
    /// Adds one explanation's outcome (`attribute`: its name, if known).
    pub fn add(&mut self, success: bool, attribute: Option<&str>) {
        self.total += 1;
        self.flipped += usize::from(success);
        if let Some(a) = attribute {
            let e = self.per_attribute.entry(a.to_string()).or_default();
            e.0 += 1;
            e.1 += usize::from(success);
        }
    }

    /// Share of flipped decisions, `None` when nothing was counted.
    pub fn rate(&self) -> Option<f64> {
        (self.total > 0).then(|| self.flipped as f64 / self.total as f64)
    }

    /// Per attribute: `(name, rate)`.
    pub fn per_attribute_rates(&self) -> Vec<(String, f64)> {
        self.per_attribute.iter().map(|(k, &(t, f))| (k.clone(), f as f64 / t as f64)).collect()
    }
}
