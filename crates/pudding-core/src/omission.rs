//! [`OmissionSet`]: which transformer blocks one request skips.

use crate::CoreError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A validated set of block indices to skip, for a model with `n_blocks` blocks.
///
/// Invariants (checked by every constructor, including deserialisation): indices are
/// sorted, unique, each `< n_blocks`, and at least one block is kept. A skipped block is
/// the identity on the residual stream and gets no KV-cache entries, so one set holds for
/// a whole request (prefill and every generated token).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawOmissionSet", into = "RawOmissionSet")]
pub struct OmissionSet {
    n_blocks: usize,
    blocks: Vec<usize>,
}

/// The serialised form: `{"n_blocks": 30, "blocks": [3, 7, 19]}`.
#[derive(Serialize, Deserialize)]
struct RawOmissionSet {
    n_blocks: usize,
    blocks: Vec<usize>,
}

impl TryFrom<RawOmissionSet> for OmissionSet {
    type Error = CoreError;
    fn try_from(raw: RawOmissionSet) -> Result<Self, CoreError> {
        // Serialised sets must already be canonical: a reordered or repeated list means the
        // file was edited by hand or made by something else, and is better reported.
        let set = OmissionSet::new(raw.blocks.iter().copied(), raw.n_blocks)?;
        if set.blocks != raw.blocks {
            return Err(CoreError::Parse {
                input: format!("{:?}", raw.blocks),
                reason: "blocks must be listed in increasing order".into(),
            });
        }
        Ok(set)
    }
}

impl From<OmissionSet> for RawOmissionSet {
    fn from(set: OmissionSet) -> Self {
        RawOmissionSet {
            n_blocks: set.n_blocks,
            blocks: set.blocks,
        }
    }
}

/// The most blocks a model may have (the same bound as the model loader's
/// `LlamaConfig::LIMITS`): a set or pool naming more comes from a corrupt file.
pub const MAX_BLOCKS: usize = 1 << 12;

impl OmissionSet {
    /// Builds a set from block indices in any order; duplicates and out-of-range indices
    /// are errors (never silently dropped or clamped).
    pub fn new(
        blocks: impl IntoIterator<Item = usize>,
        n_blocks: usize,
    ) -> Result<Self, CoreError> {
        if n_blocks == 0 {
            return Err(CoreError::NoBlocks);
        }
        if n_blocks > MAX_BLOCKS {
            return Err(CoreError::TooManyBlocks {
                n_blocks,
                max: MAX_BLOCKS,
            });
        }
        let mut sorted: Vec<usize> = blocks.into_iter().collect();
        sorted.sort_unstable();
        for pair in sorted.windows(2) {
            if pair[0] == pair[1] {
                return Err(CoreError::DuplicateBlock(pair[0]));
            }
        }
        if let Some(&block) = sorted.iter().find(|&&b| b >= n_blocks) {
            return Err(CoreError::BlockOutOfRange { block, n_blocks });
        }
        if sorted.len() >= n_blocks {
            return Err(CoreError::SkipsEverything {
                requested: sorted.len(),
                n_blocks,
            });
        }
        Ok(Self {
            n_blocks,
            blocks: sorted,
        })
    }

    /// The empty set: the dense model.
    pub fn dense(n_blocks: usize) -> Result<Self, CoreError> {
        Self::new([], n_blocks)
    }

    /// Parses `"3,7,19"`, ranges such as `"10-19"` (inclusive) and mixtures (`"1,5-7"`).
    /// An empty string or `"none"` is the dense set. Whitespace is ignored.
    pub fn parse(text: &str, n_blocks: usize) -> Result<Self, CoreError> {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("none") {
            return Self::dense(n_blocks);
        }
        let bad = |reason: String| CoreError::Parse {
            input: text.to_string(),
            reason,
        };
        let parse_index = |s: &str| -> Result<usize, CoreError> {
            s.trim()
                .parse::<usize>()
                .map_err(|_| bad(format!("{:?} is not a block index", s.trim())))
        };
        let mut blocks = Vec::new();
        for part in trimmed.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(bad("empty entry between commas".into()));
            }
            match part.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = (parse_index(lo)?, parse_index(hi)?);
                    if lo > hi {
                        return Err(bad(format!("range {lo}-{hi} is reversed")));
                    }
                    if hi >= n_blocks {
                        return Err(CoreError::BlockOutOfRange {
                            block: hi,
                            n_blocks,
                        });
                    }
                    blocks.extend(lo..=hi);
                }
                None => blocks.push(parse_index(part)?),
            }
        }
        Self::new(blocks, n_blocks)
    }

    /// Number of blocks of the model this set is for.
    pub fn n_blocks(&self) -> usize {
        self.n_blocks
    }

    /// The skipped block indices, sorted ascending.
    pub fn blocks(&self) -> &[usize] {
        &self.blocks
    }

    /// Number of skipped blocks (k).
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// True for the dense model (nothing skipped).
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Whether block `block` is skipped.
    pub fn skips(&self, block: usize) -> bool {
        self.blocks.binary_search(&block).is_ok()
    }

    /// The blocks that run, ascending.
    pub fn kept(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.n_blocks).filter(move |b| !self.skips(*b))
    }

    /// The fraction of blocks that run: the ideal cost ratio of the skipped model to the
    /// dense one for the block stack (embeddings and head excluded).
    pub fn kept_fraction(&self) -> f64 {
        (self.n_blocks - self.blocks.len()) as f64 / self.n_blocks as f64
    }

    /// Errors unless this set was made for a model with `n_blocks` blocks.
    pub fn check_blocks(&self, n_blocks: usize) -> Result<(), CoreError> {
        if self.n_blocks != n_blocks {
            return Err(CoreError::BlockCountMismatch {
                set_blocks: self.n_blocks,
                model_blocks: n_blocks,
            });
        }
        Ok(())
    }

    /// This set with one more block skipped.
    pub fn with(&self, block: usize) -> Result<Self, CoreError> {
        Self::new(self.blocks.iter().copied().chain([block]), self.n_blocks)
    }
}

impl fmt::Display for OmissionSet {
    /// Comma-separated indices (`"3,7,19"`), or `"none"` for the dense set; parses back
    /// with [`OmissionSet::parse`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.blocks.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self.blocks.iter().map(|b| b.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_ranges() {
        let s = OmissionSet::parse("19, 3,7", 30).unwrap();
        assert_eq!(s.blocks(), &[3, 7, 19]);
        assert_eq!(s.to_string(), "3,7,19");
        let r = OmissionSet::parse("10-12,1", 30).unwrap();
        assert_eq!(r.blocks(), &[1, 10, 11, 12]);
        assert!(OmissionSet::parse("", 30).unwrap().is_empty());
        assert!(OmissionSet::parse("none", 30).unwrap().is_empty());
        assert_eq!(OmissionSet::parse(&s.to_string(), 30).unwrap(), s);
    }

    #[test]
    fn rejects_bad_sets() {
        assert!(matches!(
            OmissionSet::parse("1", usize::MAX),
            Err(CoreError::TooManyBlocks { .. })
        ));
        let huge = serde_json::from_str::<OmissionSet>(r#"{"n_blocks": 1000000000, "blocks": []}"#);
        assert!(huge.unwrap_err().to_string().contains("blocks"));
        assert!(matches!(
            OmissionSet::parse("3,30", 30),
            Err(CoreError::BlockOutOfRange { block: 30, .. })
        ));
        assert!(matches!(
            OmissionSet::parse("3,3", 30),
            Err(CoreError::DuplicateBlock(3))
        ));
        assert!(matches!(
            OmissionSet::parse("0-3", 4),
            Err(CoreError::SkipsEverything { .. })
        ));
        assert!(matches!(
            OmissionSet::parse("a,b", 4),
            Err(CoreError::Parse { .. })
        ));
        assert!(matches!(
            OmissionSet::parse("3,,4", 30),
            Err(CoreError::Parse { .. })
        ));
        assert!(matches!(
            OmissionSet::parse("5-2", 30),
            Err(CoreError::Parse { .. })
        ));
        assert!(matches!(
            OmissionSet::parse("-1", 30),
            Err(CoreError::Parse { .. })
        ));
        assert!(matches!(OmissionSet::dense(0), Err(CoreError::NoBlocks)));
    }

    #[test]
    fn serde_round_trip_validates() {
        let s = OmissionSet::parse("1,5", 8).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"n_blocks":8,"blocks":[1,5]}"#);
        let back: OmissionSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert!(serde_json::from_str::<OmissionSet>(r#"{"n_blocks":8,"blocks":[9]}"#).is_err());
        assert!(serde_json::from_str::<OmissionSet>(r#"{"n_blocks":8,"blocks":[5,1]}"#).is_err());
    }

    #[test]
    fn kept_and_membership() {
        let s = OmissionSet::parse("0,2", 4).unwrap();
        assert_eq!(s.kept().collect::<Vec<_>>(), vec![1, 3]);
        assert!(s.skips(2) && !s.skips(1));
        assert_eq!(s.kept_fraction(), 0.5);
        assert!(s.check_blocks(5).is_err());
        assert_eq!(s.with(1).unwrap().blocks(), &[0, 1, 2]);
    }
}
