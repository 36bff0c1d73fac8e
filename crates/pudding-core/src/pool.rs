//! [`CandidatePool`]: the ordered omission sets a router chooses between.

use crate::{io, CoreError, ModelFingerprint, OmissionSet};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One candidate omission set with where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The blocks this candidate skips.
    pub set: OmissionSet,
    /// Free-form provenance (calibration task, loss, loss after each greedy step, ...).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub provenance: serde_json::Value,
}

/// An ordered list of candidate omission sets, all for one model (by fingerprint).
/// Stored as JSON; a router's output index `i` refers to `candidates[i]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidatePool {
    /// The model the pool was built for.
    pub fingerprint: ModelFingerprint,
    /// The candidates, in router-output order.
    pub candidates: Vec<Candidate>,
}

impl CandidatePool {
    /// Builds a pool, checking it is non-empty and every set matches the model's block
    /// count.
    pub fn new(
        fingerprint: ModelFingerprint,
        candidates: Vec<Candidate>,
    ) -> Result<Self, CoreError> {
        let pool = Self {
            fingerprint,
            candidates,
        };
        pool.validate()?;
        Ok(pool)
    }

    fn validate(&self) -> Result<(), CoreError> {
        if self.candidates.is_empty() {
            return Err(CoreError::InvalidPool("the pool has no candidates".into()));
        }
        for (i, c) in self.candidates.iter().enumerate() {
            c.set
                .check_blocks(self.fingerprint.n_blocks)
                .map_err(|e| CoreError::InvalidPool(format!("candidate {i}: {e}")))?;
        }
        Ok(())
    }

    /// Number of candidates.
    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    /// True when the pool has no candidate (never for a validated pool).
    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    /// A stable identity of the pool: hex SHA-256 over the model hash and every
    /// candidate's blocks (provenance excluded). Routers and label files record it.
    pub fn id(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.fingerprint.hash.as_bytes());
        for c in &self.candidates {
            h.update(format!("|{}:{}", c.set.n_blocks(), c.set).as_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Errors unless the pool was made for `model`.
    pub fn check_model(&self, model: &ModelFingerprint) -> Result<(), CoreError> {
        self.fingerprint.check_matches(model, "candidate pool")
    }

    /// Loads and validates a pool file.
    pub fn load(path: &Path) -> Result<Self, CoreError> {
        let pool: Self = io::read_json(path)?;
        pool.validate()?;
        Ok(pool)
    }

    /// Writes the pool as pretty JSON, atomically.
    pub fn save(&self, path: &Path) -> Result<(), CoreError> {
        io::write_json_atomic(path, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FingerprintBuilder;

    fn fp(n_blocks: usize) -> ModelFingerprint {
        FingerprintBuilder::new("llama", n_blocks, 8, 16, "{}").finish()
    }

    #[test]
    fn round_trip_and_validation() {
        let set = OmissionSet::parse("1,2", 6).unwrap();
        let pool = CandidatePool::new(
            fp(6),
            vec![Candidate {
                set,
                provenance: serde_json::json!({"task": "arc_easy", "loss": "tl"}),
            }],
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.json");
        pool.save(&path).unwrap();
        assert_eq!(CandidatePool::load(&path).unwrap(), pool);
        assert!(pool.check_model(&fp(6)).is_ok());
        assert!(pool.check_model(&fp(7)).is_err());
        assert!(CandidatePool::new(fp(6), vec![]).is_err());
        let wrong = Candidate {
            set: OmissionSet::parse("1", 5).unwrap(),
            provenance: serde_json::Value::Null,
        };
        assert!(CandidatePool::new(fp(6), vec![wrong]).is_err());
    }
}
