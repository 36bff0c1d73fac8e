//! [`ModelFingerprint`]: an identity for "the model an artifact was made for".

use crate::CoreError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Identifies a model: its shape, plus a SHA-256 over its configuration and every tensor's
/// name, shape, storage type and raw bytes. Two loads of the same file give the same
/// fingerprint; a different checkpoint of the same architecture does not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelFingerprint {
    /// Architecture name, e.g. `"llama"`.
    pub architecture: String,
    /// Number of transformer blocks.
    pub n_blocks: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hex SHA-256 over config and tensors (see [`FingerprintBuilder`]).
    pub hash: String,
}

impl ModelFingerprint {
    /// A short human-readable form: `llama/30x576/v49152/1a2b3c4d`.
    pub fn short(&self) -> String {
        format!(
            "{}/{}x{}/v{}/{}",
            self.architecture,
            self.n_blocks,
            self.hidden_size,
            self.vocab_size,
            self.hash.chars().take(12).collect::<String>()
        )
    }

    /// Errors with [`CoreError::FingerprintMismatch`] unless `self` (the fingerprint an
    /// artifact called `what` carries) equals `model`.
    pub fn check_matches(&self, model: &ModelFingerprint, what: &str) -> Result<(), CoreError> {
        if self != model {
            return Err(CoreError::FingerprintMismatch {
                what: what.to_string(),
                expected: self.short(),
                actual: model.short(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for ModelFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

/// Incrementally hashes a model's identity. Feed the configuration once, then every
/// tensor in a fixed order (e.g. sorted by name); the hash is length-prefixed so that
/// different splits of the same bytes cannot collide.
pub struct FingerprintBuilder {
    architecture: String,
    n_blocks: usize,
    hidden_size: usize,
    vocab_size: usize,
    hasher: Sha256,
}

impl FingerprintBuilder {
    /// Starts a fingerprint for a model of the given shape; `config_json` is the canonical
    /// configuration text (hashed as is).
    pub fn new(
        architecture: &str,
        n_blocks: usize,
        hidden_size: usize,
        vocab_size: usize,
        config_json: &str,
    ) -> Self {
        let mut hasher = Sha256::new();
        Self::feed(&mut hasher, architecture.as_bytes());
        Self::feed(&mut hasher, config_json.as_bytes());
        Self {
            architecture: architecture.to_string(),
            n_blocks,
            hidden_size,
            vocab_size,
            hasher,
        }
    }

    fn feed(hasher: &mut Sha256, bytes: &[u8]) {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }

    /// Adds one tensor: its name, shape, storage type name and raw stored bytes.
    pub fn add_tensor(&mut self, name: &str, shape: &[usize], dtype: &str, data: &[u8]) {
        Self::feed(&mut self.hasher, name.as_bytes());
        let shape_text: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        Self::feed(&mut self.hasher, shape_text.join("x").as_bytes());
        Self::feed(&mut self.hasher, dtype.as_bytes());
        Self::feed(&mut self.hasher, data);
    }

    /// Finishes the hash.
    pub fn finish(self) -> ModelFingerprint {
        let digest = self.hasher.finalize();
        let hash = digest.iter().map(|b| format!("{b:02x}")).collect();
        ModelFingerprint {
            architecture: self.architecture,
            n_blocks: self.n_blocks,
            hidden_size: self.hidden_size,
            vocab_size: self.vocab_size,
            hash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(data: &[u8]) -> ModelFingerprint {
        let mut b = FingerprintBuilder::new("llama", 2, 8, 16, "{}");
        b.add_tensor("w", &[2, 4], "F32", data);
        b.finish()
    }

    #[test]
    fn same_input_same_hash_and_data_changes_it() {
        assert_eq!(build(b"abc"), build(b"abc"));
        assert_ne!(build(b"abc").hash, build(b"abd").hash);
        let a = build(b"abc");
        assert!(a.check_matches(&build(b"abc"), "pool").is_ok());
        let err = a.check_matches(&build(b"xyz"), "pool").unwrap_err();
        assert!(err.to_string().contains("pool was made for model"));
    }
}
