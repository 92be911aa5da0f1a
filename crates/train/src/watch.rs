//! The gradient-norm watch: warns when the norm leaves its running range.

/// Warns when the gradient norm leaves its running range (explosion or
/// vanishing), at most once every 50 steps.
#[derive(Default)]
pub struct NormWatch {
    log_mean: f64,
    seen: u64,
    last_warning: Option<u64>,
}

impl NormWatch {
    pub fn observe(&mut self, norm: f32, step: u64) -> Option<String> {
        let x = (norm as f64).max(1e-30).ln();
        self.seen += 1;
        if self.seen == 1 {
            self.log_mean = x;
            return None;
        }
        let typical = self.log_mean.exp();
        self.log_mean = 0.95 * self.log_mean + 0.05 * x;
        if self.seen < 20 || self.last_warning.is_some_and(|w| step < w + 50) {
            return None;
        }
        let msg = if norm as f64 > 10.0 * typical {
            format!(
                "step {}: gradient norm {norm:.3e} is over 10x its running level {typical:.3e} (explosion?)",
                step + 1
            )
        } else if (norm as f64) < typical / 100.0 {
            format!(
                "step {}: gradient norm {norm:.3e} is under 1/100 of its running level {typical:.3e} (vanishing?)",
                step + 1
            )
        } else {
            return None;
        };
        self.last_warning = Some(step);
        Some(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norm_watch_flags_a_spike_once() {
        let mut w = NormWatch::default();
        for s in 0..30 {
            assert!(w.observe(1.0, s).is_none());
        }
        assert!(w.observe(100.0, 30).unwrap().contains("explosion"));
        assert!(w.observe(100.0, 31).is_none(), "rate limited");
        for s in 32..90 {
            w.observe(1.0, s);
        }
        assert!(w.observe(1e-4, 90).unwrap().contains("vanishing"));
    }
}
