//! [`Shard`]: one part of a job split over several processes (a Slurm array task, a
//! Kubernetes Indexed Job pod), chosen by position in the job's canonical item order.
//!
//! Shard `i` of `n` takes the contiguous positions `floor(i * len / n) .. floor((i + 1) *
//! len / n)`: every position is in exactly one shard, shard sizes differ by at most one,
//! and the split depends only on `len`, `i` and `n` (never on a hash, the thread count or
//! how `n` factorises), so a rerun of one shard takes exactly the same items.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

/// The most shards a job may be split into.
pub const MAX_SHARDS: usize = 1 << 20;

/// Why a shard specification was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Not of the form `I/N` with two unsigned integers.
    #[error("shard {0:?} is not of the form I/N (0-based index I of N shards, e.g. 0/4)")]
    Malformed(String),
    /// `N` is zero or above [`MAX_SHARDS`].
    #[error("a job is split into 1 to {MAX_SHARDS} shards, not {0}")]
    BadCount(usize),
    /// `I` is not below `N`.
    #[error("shard index {index} is out of range for {count} shards (indices 0..={max})", max = count - 1)]
    IndexOutOfRange {
        /// The index given.
        index: usize,
        /// The shard count given.
        count: usize,
    },
    /// Outputs of splits into different numbers of shards were put together.
    #[error("shards of a {0}-way and a {1}-way split are mixed")]
    MixedCounts(usize, usize),
    /// The same shard was given twice.
    #[error("shard {0} is given twice")]
    Repeated(Shard),
    /// Shards of the split were not given.
    #[error(
        "shard{} {} {} missing (a {count}-way split needs all {count})",
        if missing.len() == 1 { "" } else { "s" },
        missing.iter().map(|i| format!("{i}/{count}")).collect::<Vec<_>>().join(", "),
        if missing.len() == 1 { "is" } else { "are" }
    )]
    Missing {
        /// The indices not given.
        missing: Vec<usize>,
        /// The split's shard count.
        count: usize,
    },
    /// No shard was given at all.
    #[error("no shard outputs given")]
    NoShards,
}

/// Shard `index` of `count` (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// This shard's index, below `count`.
    pub index: usize,
    /// How many shards the job is split into.
    pub count: usize,
}

impl Shard {
    /// Shard `index` of `count`, checked.
    pub fn new(index: usize, count: usize) -> Result<Self, ShardError> {
        if count == 0 || count > MAX_SHARDS {
            return Err(ShardError::BadCount(count));
        }
        if index >= count {
            return Err(ShardError::IndexOutOfRange { index, count });
        }
        Ok(Self { index, count })
    }

    /// The positions of a `len`-item job that this shard takes.
    pub fn range(&self, len: usize) -> Range<usize> {
        let bound = |i: usize| (i as u128 * len as u128 / self.count as u128) as usize;
        bound(self.index)..bound(self.index + 1)
    }

    /// How many of a `len`-item job's items this shard takes.
    pub fn len_of(&self, len: usize) -> usize {
        self.range(len).len()
    }

    /// This shard's items of `items` (in their order).
    pub fn select<T>(&self, items: Vec<T>) -> Vec<T> {
        let range = self.range(items.len());
        items
            .into_iter()
            .skip(range.start)
            .take(range.len())
            .collect()
    }

    /// The file-name tag of this shard, `shard-I-of-N` (e.g. `shard-0-of-4`).
    pub fn tag(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }

    /// The shard whose [`Self::tag`] is exactly `tag` (`None` for any other text, e.g.
    /// `shard-01-of-4` or `shard-4-of-4`).
    pub fn from_tag(tag: &str) -> Option<Self> {
        let (index, count) = tag.strip_prefix("shard-")?.split_once("-of-")?;
        let shard = Self::new(index.parse().ok()?, count.parse().ok()?).ok()?;
        (shard.tag() == tag).then_some(shard)
    }

    /// Checks that `shards` (in any order) are every shard of one split exactly once: one
    /// count, no index twice, none missing. What every merge of shard outputs checks first.
    pub fn check_complete(shards: &[Shard]) -> Result<(), ShardError> {
        let Some(first) = shards.first() else {
            return Err(ShardError::NoShards);
        };
        let count = first.count;
        if let Some(other) = shards.iter().find(|s| s.count != count) {
            return Err(ShardError::MixedCounts(count, other.count));
        }
        let mut seen = vec![false; count];
        for s in shards {
            if std::mem::replace(&mut seen[s.index], true) {
                return Err(ShardError::Repeated(*s));
            }
        }
        let missing: Vec<usize> = (0..count).filter(|&i| !seen[i]).collect();
        if !missing.is_empty() {
            return Err(ShardError::Missing { missing, count });
        }
        Ok(())
    }

    /// The shard outputs `items` (in any order) in shard order, after
    /// [`Self::check_complete`] on their shards (`shard_of` reads an output's shard).
    pub fn in_order<T>(items: &[T], shard_of: impl Fn(&T) -> Shard) -> Result<Vec<&T>, ShardError> {
        let shards: Vec<Shard> = items.iter().map(&shard_of).collect();
        Self::check_complete(&shards)?;
        let mut ordered: Vec<&T> = items.iter().collect();
        ordered.sort_by_key(|item| shard_of(item).index);
        Ok(ordered)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    /// Parses `I/N`, e.g. `0/4` (surrounding spaces allowed).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || ShardError::Malformed(s.to_string());
        let (index, count) = s.trim().split_once('/').ok_or_else(malformed)?;
        let parse = |v: &str| {
            let v = v.trim();
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed());
            }
            v.parse::<usize>().map_err(|_| malformed())
        };
        Self::new(parse(index)?, parse(count)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every position in exactly one shard, in order, sizes within one of each other, for
    /// many lengths and counts (including more shards than items).
    #[test]
    fn shards_partition_every_length() {
        for len in 0..60 {
            for count in 1..=13 {
                let mut next = 0;
                let mut sizes = Vec::new();
                for index in 0..count {
                    let r = Shard::new(index, count).unwrap().range(len);
                    assert_eq!(r.start, next, "len {len}, shard {index}/{count}");
                    next = r.end;
                    sizes.push(r.len());
                }
                assert_eq!(next, len);
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "len {len}, {count} shards: sizes {sizes:?}");
            }
        }
    }

    /// The split is a function of (len, index, count) only: splitting a 6-way shard's
    /// items does not depend on 6 = 2 x 3, and the same call gives the same items.
    #[test]
    fn the_split_depends_only_on_the_position_and_the_count() {
        let items: Vec<usize> = (0..1000).collect();
        let six: Vec<Vec<usize>> = (0..6)
            .map(|i| Shard::new(i, 6).unwrap().select(items.clone()))
            .collect();
        assert_eq!(six.concat(), items);
        for (i, part) in six.iter().enumerate() {
            assert_eq!(&Shard::new(i, 6).unwrap().select(items.clone()), part);
            assert_eq!(part.len(), Shard::new(i, 6).unwrap().len_of(1000));
        }
        // A huge job does not overflow the bound arithmetic.
        let r = Shard::new(3, 4).unwrap().range(usize::MAX);
        assert_eq!(r.end, usize::MAX);
    }

    #[test]
    fn a_complete_split_is_every_shard_once() {
        let s = |i, n| Shard::new(i, n).unwrap();
        assert_eq!(Shard::check_complete(&[s(2, 3), s(0, 3), s(1, 3)]), Ok(()));
        assert_eq!(Shard::check_complete(&[]), Err(ShardError::NoShards));
        assert_eq!(
            Shard::check_complete(&[s(0, 2), s(1, 3)]),
            Err(ShardError::MixedCounts(2, 3))
        );
        assert_eq!(
            Shard::check_complete(&[s(0, 2), s(1, 2), s(0, 2)]),
            Err(ShardError::Repeated(s(0, 2)))
        );
        let missing = Shard::check_complete(&[s(1, 4)]).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "shards 0/4, 2/4, 3/4 are missing (a 4-way split needs all 4)"
        );
        assert_eq!(
            Shard::check_complete(&[s(0, 2)]).unwrap_err().to_string(),
            "shard 1/2 is missing (a 2-way split needs all 2)"
        );
        assert_eq!(Shard::from_tag("shard-1-of-4"), Some(s(1, 4)));
        for bad in [
            "shard-01-of-4",
            "shard-4-of-4",
            "shard-1-of-4x",
            "x",
            "shard--of-4",
        ] {
            assert_eq!(Shard::from_tag(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        assert_eq!(" 0 / 1 ".parse::<Shard>(), Ok(Shard { index: 0, count: 1 }));
        assert_eq!(Shard::new(1, 3).unwrap().to_string(), "1/3");
        assert_eq!(Shard::new(1, 3).unwrap().tag(), "shard-1-of-3");
        for bad in ["", "3", "1/", "/4", "-1/4", "1/4/2", "a/4", "1.0/4", "+1/4"] {
            assert_eq!(
                bad.parse::<Shard>(),
                Err(ShardError::Malformed(bad.to_string())),
                "{bad:?}"
            );
        }
        assert_eq!("0/0".parse::<Shard>(), Err(ShardError::BadCount(0)));
        assert_eq!(
            "4/4".parse::<Shard>(),
            Err(ShardError::IndexOutOfRange { index: 4, count: 4 })
        );
        assert!("0/99999999".parse::<Shard>().is_err());
    }
}
