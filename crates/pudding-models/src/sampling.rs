//! Next-token choice: greedy, or temperature + nucleus (top-p) sampling.

use crate::ModelError;
use pudding_core::Sampling;

/// A small deterministic generator (SplitMix64) so a seed reproduces a generation on every
/// platform and backend.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform value in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Chooses tokens from logits according to a [`Sampling`] rule.
#[derive(Clone, Debug)]
pub struct Sampler {
    rule: Sampling,
    rng: SplitMix64,
}

impl Sampler {
    /// Validates the rule (temperature > 0, 0 < top_p <= 1) and seeds the generator.
    pub fn new(rule: &Sampling) -> Result<Self, ModelError> {
        let seed = match rule {
            Sampling::Greedy => 0,
            Sampling::TopP {
                temperature,
                top_p,
                seed,
            } => {
                if !(temperature.is_finite() && *temperature > 0.0) {
                    return Err(ModelError::Generation(format!(
                        "temperature must be > 0 (got {temperature}); use greedy decoding for temperature 0"
                    )));
                }
                if !(*top_p > 0.0 && *top_p <= 1.0) {
                    return Err(ModelError::Generation(format!(
                        "top_p must be in (0, 1] (got {top_p})"
                    )));
                }
                *seed
            }
        };
        Ok(Self {
            rule: rule.clone(),
            rng: SplitMix64::new(seed),
        })
    }

    /// Picks the next token from `logits` (one row of length v). Non-finite logits (an
    /// overflow) are an error, never a token picked from noise.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32, ModelError> {
        check_finite("logits", logits)?;
        Ok(match self.rule {
            Sampling::Greedy => argmax(logits),
            Sampling::TopP {
                temperature, top_p, ..
            } => self.nucleus(logits, temperature, top_p),
        })
    }

    fn nucleus(&mut self, logits: &[f32], temperature: f32, top_p: f32) -> u32 {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, (((l - max) / temperature) as f64).exp()))
            .collect();
        let total: f64 = probs.iter().map(|p| p.1).sum();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut kept = 0;
        let mut mass = 0.0;
        for p in &probs {
            mass += p.1 / total;
            kept += 1;
            if mass >= top_p as f64 {
                break;
            }
        }
        let probs = &probs[..kept];
        let kept_total: f64 = probs.iter().map(|p| p.1).sum();
        let mut u = self.rng.next_f64() * kept_total;
        for p in probs {
            u -= p.1;
            if u < 0.0 {
                return p.0;
            }
        }
        probs[kept - 1].0
    }
}

/// Errors with [`ModelError::NonFiniteOutput`] at the first NaN or infinity in `values`.
pub fn check_finite(what: &'static str, values: &[f32]) -> Result<(), ModelError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(ModelError::NonFiniteOutput { what, index }),
        None => Ok(()),
    }
}

/// Index of the largest logit (the lowest index on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_validation() {
        let mut s = Sampler::new(&Sampling::Greedy).unwrap();
        assert_eq!(s.sample(&[0.1, 2.0, 2.0, -1.0]).unwrap(), 1);
        let bad = Sampling::TopP {
            temperature: 0.0,
            top_p: 0.9,
            seed: 1,
        };
        assert!(Sampler::new(&bad).is_err());
        let bad = Sampling::TopP {
            temperature: 1.0,
            top_p: 1.5,
            seed: 1,
        };
        assert!(Sampler::new(&bad).is_err());
    }

    /// Probabilities 0.4, 0.3, 0.2, 0.1 with top-p 0.6: the nucleus is tokens 0 and 1
    /// (0.4 < 0.6 <= 0.7), drawn 4 : 3. At temperature 0.5 the probabilities become
    /// proportional to p^2 (0.533, 0.3, ...), the nucleus is still {0, 1}, drawn 16 : 9.
    #[test]
    fn top_p_keeps_the_nucleus_with_its_relative_weights() {
        let logits: Vec<f32> = [0.4f32, 0.3, 0.2, 0.1].iter().map(|p| p.ln()).collect();
        for (temperature, share_of_0) in [(1.0f32, 4.0 / 7.0), (0.5, 16.0 / 25.0)] {
            let mut s = Sampler::new(&Sampling::TopP {
                temperature,
                top_p: 0.6,
                seed: 11,
            })
            .unwrap();
            let n = 4000;
            let draws: Vec<u32> = (0..n).map(|_| s.sample(&logits).unwrap()).collect();
            assert!(draws.iter().all(|&t| t <= 1), "outside the nucleus");
            let zeros = draws.iter().filter(|&&t| t == 0).count() as f64 / n as f64;
            // Binomial standard error ~0.008; 5 of them.
            assert!(
                (zeros - share_of_0).abs() < 0.04,
                "temperature {temperature}: {zeros} vs {share_of_0}"
            );
        }
    }

    #[test]
    fn top_p_stays_in_nucleus_and_is_seeded() {
        let rule = Sampling::TopP {
            temperature: 1.0,
            top_p: 0.5,
            seed: 7,
        };
        // Token 2 alone holds > 50% of the mass, so it is always chosen.
        let logits = [0.0, 0.0, 5.0, 0.0];
        let mut s = Sampler::new(&rule).unwrap();
        assert!((0..50).all(|_| s.sample(&logits).unwrap() == 2));
        // Same seed, same draws.
        let flat = [0.0f32; 16];
        let mut a = Sampler::new(&Sampling::TopP {
            temperature: 1.0,
            top_p: 1.0,
            seed: 3,
        })
        .unwrap();
        let mut b = Sampler::new(&Sampling::TopP {
            temperature: 1.0,
            top_p: 1.0,
            seed: 3,
        })
        .unwrap();
        let da: Vec<u32> = (0..20).map(|_| a.sample(&flat).unwrap()).collect();
        let db: Vec<u32> = (0..20).map(|_| b.sample(&flat).unwrap()).collect();
        assert_eq!(da, db);
        assert!(da.iter().any(|&t| t != da[0]));
    }

    #[test]
    fn non_finite_logits_are_refused() {
        let mut s = Sampler::new(&Sampling::Greedy).unwrap();
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let err = s.sample(&[0.1, bad, 2.0]).unwrap_err();
            assert!(
                matches!(
                    err,
                    ModelError::NonFiniteOutput {
                        what: "logits",
                        index: 1
                    }
                ),
                "{err}"
            );
        }
    }
}
