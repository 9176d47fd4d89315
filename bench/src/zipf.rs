//! Zipf-distributed ranks by rejection-inversion (Hörmann & Derflinger 1996, the method of
//! Apache Commons RNG and rand_distr): O(1) per sample and no table, so key spaces of any size
//! cost nothing to set up.

use crate::rng::Rng;

/// Samples ranks 1..=n with P(k) ∝ 1/k^exponent.
#[derive(Debug, Clone)]
pub struct Zipf {
    n: f64,
    exponent: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    s: f64,
}

impl Zipf {
    /// `n` ≥ 1 elements, `exponent` > 0 (1.0 is classic Zipf; YCSB uses 0.99).
    pub fn new(n: u64, exponent: f64) -> Result<Self, String> {
        if n == 0 {
            return Err("zipf needs at least one element".into());
        }
        if !(exponent > 0.0 && exponent.is_finite()) {
            return Err(format!("zipf exponent must be positive, not {exponent}"));
        }
        let mut z = Self { n: n as f64, exponent, h_integral_x1: 0.0, h_integral_n: 0.0, s: 0.0 };
        z.h_integral_x1 = z.h_integral(1.5) - 1.0;
        z.h_integral_n = z.h_integral(z.n + 0.5);
        z.s = 2.0 - z.h_integral_inverse(z.h_integral(2.5) - z.h(2.0));
        Ok(z)
    }

    /// A rank in 1..=n.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_integral_n + rng.next_f64() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            // Accept when k's bar covers u; the first test is a cheap sufficient condition.
            if k - x <= self.s || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }

    fn h(&self, x: f64) -> f64 {
        (-self.exponent * x.ln()).exp()
    }

    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.exponent) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.exponent)).max(-1.0);
        (helper1(t) * x).exp()
    }
}

/// ln(1+x)/x, accurate near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// (e^x − 1)/x, accurate near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frequencies(n: u64, exponent: f64, samples: usize) -> Vec<f64> {
        let z = Zipf::new(n, exponent).unwrap();
        let mut rng = Rng::new(99);
        let mut counts = vec![0u64; n as usize + 1];
        for _ in 0..samples {
            let k = z.sample(&mut rng);
            assert!((1..=n).contains(&k), "rank {k} out of 1..={n}");
            counts[k as usize] += 1;
        }
        counts.iter().map(|&c| c as f64 / samples as f64).collect()
    }

    #[test]
    fn matches_the_exact_distribution() {
        for exponent in [0.5, 0.99, 1.0, 1.5] {
            let n = 50u64;
            let norm: f64 = (1..=n).map(|k| (k as f64).powf(-exponent)).sum();
            let freq = frequencies(n, exponent, 400_000);
            for k in [1u64, 2, 3, 10, 50] {
                let expected = (k as f64).powf(-exponent) / norm;
                let got = freq[k as usize];
                assert!(
                    (got - expected).abs() < 0.01 + expected * 0.05,
                    "exponent {exponent} rank {k}: got {got:.4}, expected {expected:.4}"
                );
            }
        }
    }

    #[test]
    fn large_key_spaces_are_skewed_toward_low_ranks() {
        let z = Zipf::new(10_000_000, 0.99).unwrap();
        let mut rng = Rng::new(3);
        let hot = (0..100_000).filter(|_| z.sample(&mut rng) <= 100).count();
        // With 10M keys and s = 0.99 the top 100 keys draw roughly a third of the samples.
        assert!((25_000..45_000).contains(&hot), "{hot}");
    }

    #[test]
    fn degenerate_inputs() {
        assert!(Zipf::new(0, 1.0).is_err());
        assert!(Zipf::new(10, 0.0).is_err());
        assert!(Zipf::new(10, f64::NAN).is_err());
        let one = Zipf::new(1, 1.2).unwrap();
        let mut rng = Rng::new(5);
        assert!((0..100).all(|_| one.sample(&mut rng) == 1));
    }
}
