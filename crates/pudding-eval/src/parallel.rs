//! Scoring many omission sets on several CPU threads at once.
//!
//! [`score_requests_sets`] shares every block whose input is the same under several sets,
//! but on a CPU backend its small matrix products (a 135M model's hidden size is 576)
//! keep the cores only partly busy. [`ParallelSetScorer`] runs single-thread passes side
//! by side, in one of two ways:
//!
//! - [`ParallelSetScorer::score_items`] (what an evaluation uses) scores several items at
//!   once, each in one pass over all its sets on its own thread; a thread takes the next
//!   item as soon as it is done, so no thread waits for another, and every item keeps the
//!   whole sharing of its sets. Results come back in item order.
//! - [`ParallelSetScorer::score`] scores one batch of requests, splitting the sets into
//!   groups that share little ([`partition_sets`]), one group per thread.
//!
//! On two cores, two single-thread passes score SmolLM2's 18 paper sets about 1.5x faster
//! than one pass on both cores. Scores equal the one-pass ones up to float rounding (the
//! matrix products split their sums differently over threads).

use crate::scorer::{score_requests_sets, score_tokenized_sets, tokenize_requests, ScoreError};
use crate::tasks::Request;
use pudding_core::{ContinuationScore, OmissionSet};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// Blocks evaluated per token when `sets` are scored together in one pass: the number of
/// distinct (block, blocks skipped before it) pairs over the blocks each set runs, which
/// is what [`score_requests_sets`] computes once per pair.
pub fn shared_block_count<'a>(sets: impl IntoIterator<Item = &'a OmissionSet>) -> usize {
    let mut seen: HashSet<(usize, &[usize])> = HashSet::new();
    for set in sets {
        let skipped = set.blocks();
        for block in set.kept() {
            // The input of `block` depends only on which earlier blocks were skipped.
            let before = skipped.partition_point(|&b| b < block);
            seen.insert((block, &skipped[..before]));
        }
    }
    seen.len()
}

/// Splits `sets` into at most `groups` non-empty groups of indices into `sets`, for
/// scoring each group in its own pass. Groups are contiguous runs of the sets in a
/// depth-first order of their block-by-block skip-or-run decisions (so sets that make the
/// same early decisions, and share the most, stay together), cut where the largest
/// group's [`shared_block_count`] is smallest. Fewer groups come back when there are fewer
/// sets; every index appears exactly once.
pub fn partition_sets(sets: &[OmissionSet], groups: usize) -> Vec<Vec<usize>> {
    // A set's skipped blocks followed by "runs every later block" (usize::MAX): sorting
    // these lists visits the decision tree depth-first, skip branches before run branches
    // (plain list order would put the dense set apart from the late skippers it shares with).
    let decisions = |i: usize| {
        let mut key = sets[i].blocks().to_vec();
        key.push(usize::MAX);
        key
    };
    let mut order: Vec<usize> = (0..sets.len()).collect();
    order.sort_by_key(|&i| decisions(i));
    let groups = groups.clamp(1, sets.len().max(1));
    if sets.is_empty() {
        return Vec::new();
    }
    let m = order.len();
    let cost =
        |from: usize, to: usize| shared_block_count(order[from..to].iter().map(|&i| &sets[i]));
    // best[g][i]: the smallest largest-group cost covering order[..i] with g groups, and
    // where its last group starts.
    let mut best = vec![vec![(usize::MAX, 0usize); m + 1]; groups + 1];
    best[0][0] = (0, 0);
    for g in 1..=groups {
        for end in g..=m {
            for start in (g - 1)..end {
                let before = best[g - 1][start].0;
                if before == usize::MAX {
                    continue;
                }
                let worst = before.max(cost(start, end));
                if worst < best[g][end].0 {
                    best[g][end] = (worst, start);
                }
            }
        }
    }
    let mut cuts = Vec::with_capacity(groups);
    let mut end = m;
    for g in (1..=groups).rev() {
        let start = best[g][end].1;
        cuts.push(order[start..end].to_vec());
        end = start;
    }
    cuts.reverse();
    cuts
}

/// Scores omission sets in groups on several single-thread pools at once (see the module
/// docs). Build it once per run: it owns its threads.
pub struct ParallelSetScorer {
    pools: Vec<rayon::ThreadPool>,
}

impl ParallelSetScorer {
    /// A scorer with `jobs` groups (at least 1; 1 scores every set in one pass on the
    /// caller's thread pool, exactly as [`score_requests_sets`]).
    pub fn new(jobs: usize) -> Result<Self, ScoreError> {
        if jobs == 0 {
            return Err(ScoreError::Threads("at least one job is needed".into()));
        }
        let pools = if jobs == 1 {
            Vec::new()
        } else {
            (0..jobs)
                .map(|j| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(1)
                        .thread_name(move |_| format!("pudding-score-{j}"))
                        .build()
                        .map_err(|e| ScoreError::Threads(e.to_string()))
                })
                .collect::<Result<_, _>>()?
        };
        Ok(Self { pools })
    }

    /// How many groups are scored at once.
    pub fn jobs(&self) -> usize {
        self.pools.len().max(1)
    }

    /// Scores each of `items` (its requests, and the sets to score them under) in one pass
    /// ([`score_requests_sets`]), `jobs` items at a time, each on one single-thread pool;
    /// `done(i, scores)` receives item `i`'s scores (entry `j`: under its `j`-th set, in
    /// request order) on the calling thread, in item order. An error from scoring or
    /// from `done` stops the run: no later item is handed over, and threads finish the
    /// item they hold and take no other.
    pub fn score_items<L, E>(
        &self,
        lm: &L,
        items: &[(Vec<Request>, Vec<OmissionSet>)],
        mut done: impl FnMut(usize, Vec<Vec<ContinuationScore>>) -> Result<(), E>,
    ) -> Result<(), E>
    where
        L: pudding_core::SkippableLm + Sync,
        E: From<ScoreError>,
    {
        if self.pools.len() < 2 {
            for (i, (requests, sets)) in items.iter().enumerate() {
                done(i, score_requests_sets(lm, requests, sets)?)?;
            }
            return Ok(());
        }
        type Scored = Result<Vec<Vec<ContinuationScore>>, ScoreError>;
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            let (sender, receiver) = mpsc::channel::<(usize, Scored)>();
            let mut spawn_error = None;
            let handles: Vec<_> = self
                .pools
                .iter()
                .filter_map(|pool| {
                    let sender = sender.clone();
                    let next = &next;
                    // The pool's one worker runs each pass, so the backend's parallel loops
                    // inside it see a single thread.
                    let spawned = std::thread::Builder::new().spawn_scoped(scope, move || {
                        pool.install(|| loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some((requests, sets)) = items.get(i) else {
                                break;
                            };
                            // A closed channel: the caller stopped; take no other item.
                            if sender
                                .send((i, score_requests_sets(lm, requests, sets)))
                                .is_err()
                            {
                                break;
                            }
                        })
                    });
                    // The threads that did start share all the items between them.
                    spawned.map_err(|e| spawn_error = Some(e)).ok()
                })
                .collect();
            drop(sender);
            // Results that arrive before an earlier item's wait here.
            let mut waiting: BTreeMap<usize, Scored> = BTreeMap::new();
            let mut handed = 0;
            let mut outcome = Ok(());
            'receive: for (i, scored) in receiver.iter() {
                waiting.insert(i, scored);
                while let Some(scored) = waiting.remove(&handed) {
                    if let Err(e) = scored.map_err(E::from).and_then(|s| done(handed, s)) {
                        outcome = Err(e);
                        break 'receive;
                    }
                    handed += 1;
                }
            }
            // Dropping the receiver (on an error) makes every thread stop after its item.
            drop(receiver);
            let started = handles.len();
            let panicked = handles.into_iter().any(|h| h.join().is_err());
            if outcome.is_ok() && (panicked || handed < items.len()) {
                let reason = match spawn_error {
                    Some(e) if started == 0 => format!("no scoring thread could start: {e}"),
                    _ => "a scoring thread panicked".into(),
                };
                outcome = Err(E::from(ScoreError::Threads(reason)));
            }
            outcome
        })
    }

    /// Scores every request under each of `sets`: entry `i` holds the scores under
    /// `sets[i]`, in request order, as [`score_requests_sets`] returns them.
    pub fn score<L>(
        &self,
        lm: &L,
        requests: &[Request],
        sets: &[OmissionSet],
    ) -> Result<Vec<Vec<ContinuationScore>>, ScoreError>
    where
        L: pudding_core::SkippableLm + Sync,
    {
        if self.pools.len() < 2 || sets.len() < 2 {
            return score_requests_sets(lm, requests, sets);
        }
        let groups = partition_sets(sets, self.pools.len());
        // Tokenised once here, not once per group.
        let requests = &tokenize_requests(lm, requests)?;
        let results: Vec<Result<Vec<Vec<ContinuationScore>>, ScoreError>> =
            std::thread::scope(|scope| {
                let handles: Vec<_> = groups
                    .iter()
                    .zip(&self.pools)
                    .map(|(group, pool)| {
                        let group_sets: Vec<OmissionSet> =
                            group.iter().map(|&i| sets[i].clone()).collect();
                        // The pool's one worker runs the pass, so the backend's parallel
                        // loops inside it see a single thread.
                        std::thread::Builder::new().spawn_scoped(scope, move || {
                            pool.install(|| score_tokenized_sets(lm, requests, &group_sets))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|spawned| match spawned {
                        Ok(h) => h.join().unwrap_or_else(|_| {
                            Err(ScoreError::Threads("a scoring thread panicked".into()))
                        }),
                        Err(e) => Err(ScoreError::Threads(format!(
                            "a scoring thread could not start: {e}"
                        ))),
                    })
                    .collect()
            });
        let mut out: Vec<Option<Vec<ContinuationScore>>> = vec![None; sets.len()];
        for (group, result) in groups.iter().zip(results) {
            let per_set = result?;
            if per_set.len() != group.len() {
                return Err(ScoreError::Model(format!(
                    "a group of {} sets got scores for {}",
                    group.len(),
                    per_set.len()
                )));
            }
            for (&i, scores) in group.iter().zip(per_set) {
                out[i] = Some(scores);
            }
        }
        out.into_iter()
            .map(|s| s.ok_or_else(|| ScoreError::Model("a set was left unscored".into())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(blocks: &[usize]) -> OmissionSet {
        OmissionSet::new(blocks.iter().copied(), 8).unwrap()
    }

    /// A tiny random 6-block model (and the directory holding its files).
    fn six_block_lm() -> (
        tempfile::TempDir,
        pudding_models::LlamaLm<pudding_models::CpuBackend>,
    ) {
        use pudding_models::testing::{load_tiny_llama, TinyLlamaSpec};
        let spec = TinyLlamaSpec {
            n_blocks: 6,
            ..Default::default()
        };
        load_tiny_llama(&spec).unwrap()
    }

    /// Sets of the 6-block model, each written as `OmissionSet::parse` reads it.
    fn six_block_sets(list: &[&str]) -> Vec<OmissionSet> {
        list.iter()
            .map(|s| OmissionSet::parse(s, 6).unwrap())
            .collect()
    }

    fn request(context: &str, continuation: &str) -> Request {
        Request {
            context: context.into(),
            continuation: continuation.into(),
        }
    }

    /// Per set and request, the same greedy flags and log-probs within 1e-4.
    fn assert_scores_close(a: &[Vec<ContinuationScore>], b: &[Vec<ContinuationScore>]) {
        assert_eq!(a.len(), b.len());
        for (a, b) in a.iter().zip(b) {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert_eq!(x.is_greedy, y.is_greedy);
                assert_eq!(x.logprobs.len(), y.logprobs.len());
                for (p, q) in x.logprobs.iter().zip(&y.logprobs) {
                    assert!((p - q).abs() < 1e-4, "{p} vs {q}");
                }
            }
        }
    }

    #[test]
    fn shared_block_count_counts_distinct_block_inputs() {
        // Dense runs 8 blocks. Skipping 5 shares blocks 0..=4 with dense and adds 6, 7 on a
        // new input: 10. Skipping 5 and 6 shares 0..=4 and adds 7 on a third input: 11.
        let dense = set(&[]);
        let s5 = set(&[5]);
        let s56 = set(&[5, 6]);
        assert_eq!(shared_block_count([&dense]), 8);
        assert_eq!(shared_block_count([&dense, &s5]), 10);
        assert_eq!(shared_block_count([&dense, &s5, &s56]), 11);
        // Sets skipping different early blocks share only what comes before.
        assert_eq!(shared_block_count(&[set(&[1]), set(&[2])]), 1 + 6 + 1 + 5);
    }

    #[test]
    fn partition_keeps_sharing_sets_together_and_covers_every_set() {
        let sets = vec![
            set(&[6, 7]),
            set(&[1, 2]),
            set(&[6]),
            set(&[1, 3]),
            set(&[]),
            set(&[1]),
        ];
        let groups = partition_sets(&sets, 2);
        assert_eq!(groups.len(), 2);
        let mut all: Vec<usize> = groups.concat();
        all.sort_unstable();
        assert_eq!(all, (0..sets.len()).collect::<Vec<_>>());
        // Depth-first order: [1,2] [1,3] [1] [6,7] [6] []. The cuts after each of the first
        // four sets cost 6|19, 11|15, 16|9 and 21|9 blocks per token; 11|15 has the smallest
        // larger group.
        let as_set = |g: &Vec<usize>| g.iter().copied().collect::<HashSet<usize>>();
        assert_eq!(as_set(&groups[0]), [1, 3].into());
        assert_eq!(as_set(&groups[1]), [5, 0, 2, 4].into());
        let cost = |g: &Vec<usize>| shared_block_count(g.iter().map(|&i| &sets[i]));
        assert_eq!((cost(&groups[0]), cost(&groups[1])), (11, 15));
    }

    #[test]
    fn partition_never_makes_empty_groups() {
        let sets = vec![set(&[1]), set(&[2])];
        assert_eq!(partition_sets(&sets, 5).len(), 2);
        assert_eq!(partition_sets(&sets, 0).len(), 1);
        assert!(partition_sets(&[], 3).is_empty());
    }

    /// Three groups on a tiny random model return, set by set and request by request, what
    /// one pass returns.
    #[test]
    fn groups_score_what_one_pass_scores() {
        let (_dir, lm) = six_block_lm();
        let sets = six_block_sets(&["", "1", "1,2", "4", "2,5", "0,3"]);
        let requests = vec![
            request("the cat sat on", " the mat"),
            request("the cat sat on", " a dog"),
            request("hello", " world again"),
        ];
        let one_pass = score_requests_sets(&lm, &requests, &sets).unwrap();
        let grouped = ParallelSetScorer::new(3)
            .unwrap()
            .score(&lm, &requests, &sets)
            .unwrap();
        assert_eq!(grouped.len(), sets.len());
        assert!(one_pass.iter().all(|scores| scores.len() == requests.len()));
        assert_scores_close(&one_pass, &grouped);
    }

    #[test]
    fn items_scored_side_by_side_come_back_in_order_as_one_by_one() {
        let (_dir, lm) = six_block_lm();
        // Items of different lengths and different missing sets, so threads finish out
        // of order.
        let items: Vec<(Vec<Request>, Vec<OmissionSet>)> = (0..7)
            .map(|i| {
                let context = "the cat sat on the mat and then ".repeat(1 + (i * 3) % 5);
                let requests = vec![
                    request(&context, " a dog"),
                    request(&context, " the bird flew away"),
                ];
                let sets = if i % 2 == 0 {
                    six_block_sets(&["", "1,2", "4"])
                } else {
                    six_block_sets(&["2,5"])
                };
                (requests, sets)
            })
            .collect();
        for jobs in [1, 3] {
            let mut seen = Vec::new();
            ParallelSetScorer::new(jobs)
                .unwrap()
                .score_items(&lm, &items, |i, scores| -> Result<(), ScoreError> {
                    let (requests, sets) = &items[i];
                    let alone = score_requests_sets(&lm, requests, sets).unwrap();
                    assert_eq!(scores.len(), sets.len());
                    assert_scores_close(&alone, &scores);
                    seen.push(i);
                    Ok(())
                })
                .unwrap();
            assert_eq!(seen, (0..items.len()).collect::<Vec<_>>(), "jobs {jobs}");
        }
        // An error from the receiver stops the run: no later item is handed over.
        let mut seen = Vec::new();
        let err = ParallelSetScorer::new(2)
            .unwrap()
            .score_items(&lm, &items, |i, _| {
                seen.push(i);
                if i == 2 {
                    Err(ScoreError::Model("stop".into()))
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        assert!(matches!(err, ScoreError::Model(_)));
        assert_eq!(seen, vec![0, 1, 2]);
        // So does a scoring error (a set made for another depth).
        let mut bad = items.clone();
        bad[1].1 = vec![OmissionSet::parse("1", 9).unwrap()];
        let mut handed = 0;
        let result = ParallelSetScorer::new(2).unwrap().score_items(
            &lm,
            &bad,
            |_, _| -> Result<(), ScoreError> {
                handed += 1;
                Ok(())
            },
        );
        assert!(result.is_err());
        assert_eq!(handed, 1);
    }

    #[test]
    fn zero_jobs_is_an_error() {
        assert!(matches!(
            ParallelSetScorer::new(0),
            Err(ScoreError::Threads(_))
        ));
        assert_eq!(ParallelSetScorer::new(1).unwrap().jobs(), 1);
        assert_eq!(ParallelSetScorer::new(3).unwrap().jobs(), 3);
    }
}
