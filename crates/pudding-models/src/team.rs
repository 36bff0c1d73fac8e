//! A team of rayon's threads that stays awake through one decode step.
//!
//! A batch-1 decode step is a chain of small products (four per block, a few hundred
//! microseconds each), with a little serial work between them. Shared out with rayon's
//! fork-join, every product wakes the other threads and lets them fall asleep again: on
//! these machines the wake-ups and context switches cost about a tenth of a step and the
//! second core idled between products. A [`Team`] takes every thread of rayon's pool for the
//! whole step ([`with_team`], one `rayon::broadcast`): the calling thread leads and runs
//! the step, the others spin until the leader publishes a job ([`Team::run`]), then claim
//! its shares one at a time. The leader claims shares too, so a job completes even if a
//! helper never arrives (e.g. its thread is busy elsewhere), and a helper that waits too
//! long for a job leaves: the team never waits on a thread, and never holds one, for
//! longer than a step's own work.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// One team at a time: helpers spin, so two teams would fight over the cores. A step that
/// finds the team taken runs on rayon's fork-join instead ([`with_team`] returns `None`).
static TEAM_LOCK: Mutex<()> = Mutex::new(());

/// How long a helper waits for the leader's next job before it leaves the team. A decode
/// step's serial stretches between products take tens of microseconds; a helper that
/// waits longer is likely waiting on a leader that has not started (its thread busy with
/// other work of a shared pool), and must not hold its own thread meanwhile: that thread's
/// other work might be what the leader waits for.
const HELPER_PATIENCE: std::time::Duration = std::time::Duration::from_millis(2);

/// A job: share index -> work. Stored type-erased while it runs.
type JobPtr = *const (dyn Fn(usize) + Sync);

/// What the leader publishes: the job, its number of shares, and its epoch.
struct Published {
    job: Option<JobPtr>,
    shares: usize,
    epoch: u32,
}

// SAFETY: the pointer is only dereferenced by a thread that claimed a share of its epoch,
// and the leader keeps the job alive until every claimed share has finished.
unsafe impl Send for Published {}

/// The threads of one step (see the module docs).
pub struct Team {
    published: Mutex<Published>,
    /// `epoch << 32 | next unclaimed share` of the current job.
    claims: AtomicU64,
    /// Shares of the current job finished.
    finished: AtomicUsize,
    /// Set when the step is over: helpers return.
    stop: AtomicBool,
    threads: usize,
}

impl Team {
    fn new(threads: usize) -> Self {
        Self {
            published: Mutex::new(Published {
                job: None,
                shares: 0,
                epoch: 0,
            }),
            claims: AtomicU64::new(0),
            finished: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            threads,
        }
    }

    /// Threads in the team (the leader included).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `job(0)`, ..., `job(shares - 1)` over the team, each exactly once, and returns
    /// when all have finished (their writes are then visible to the caller). Called by the
    /// leader only.
    pub fn run(&self, shares: usize, job: &(dyn Fn(usize) + Sync)) {
        if shares == 0 {
            return;
        }
        let epoch = {
            let mut p = self.published.lock().unwrap_or_else(|e| e.into_inner());
            p.epoch = p.epoch.wrapping_add(1);
            // SAFETY (lifetime erasure): helpers dereference the pointer only after claiming
            // a share of this epoch, and this function returns only once every claimed share
            // has finished; later claims of this epoch fail (all shares are taken).
            let erased: JobPtr = unsafe {
                std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(job)
            };
            p.job = Some(erased);
            p.shares = shares;
            p.epoch
        };
        self.finished.store(0, Ordering::Relaxed);
        self.claims.store(u64::from(epoch) << 32, Ordering::Release);
        while let Some(share) = self.claim(epoch, shares) {
            job(share);
            self.finished.fetch_add(1, Ordering::Release);
        }
        while self.finished.load(Ordering::Acquire) < shares {
            std::hint::spin_loop();
        }
    }

    /// Claims the next share of job `epoch`, or `None` when all are taken or the job is
    /// not (or no longer) the current one.
    fn claim(&self, epoch: u32, shares: usize) -> Option<usize> {
        let mut current = self.claims.load(Ordering::Acquire);
        loop {
            let (e, next) = ((current >> 32) as u32, (current & 0xFFFF_FFFF) as usize);
            if e != epoch || next >= shares {
                return None;
            }
            match self.claims.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(next),
                Err(seen) => current = seen,
            }
        }
    }

    /// A helper's loop: take shares of each new job until the leader stops the team, or
    /// until no job has come for [`HELPER_PATIENCE`] (the leader may be slow to start, or
    /// busy with something that is not the team's: the helper then returns its thread to
    /// rayon, and the leader finishes every job alone).
    fn help(&self) {
        let mut done_epoch = 0u32;
        let mut idle_since = std::time::Instant::now();
        let mut spins = 0u32;
        while !self.stop.load(Ordering::Acquire) {
            let claimed_epoch = (self.claims.load(Ordering::Acquire) >> 32) as u32;
            if claimed_epoch == done_epoch {
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(1024) && idle_since.elapsed() > HELPER_PATIENCE {
                    return;
                }
                continue;
            }
            let (job, shares, epoch) = {
                let p = self.published.lock().unwrap_or_else(|e| e.into_inner());
                (p.job, p.shares, p.epoch)
            };
            // The leader publishes a job before opening its claims: a newer one here means
            // its claims are about to open; look again.
            let Some(job) = job.filter(|_| epoch == claimed_epoch) else {
                continue;
            };
            while let Some(share) = self.claim(epoch, shares) {
                // SAFETY: a share of `epoch` was claimed, so the leader is still inside
                // `run` for this job and keeps it alive until this share finishes.
                unsafe { (*job)(share) };
                self.finished.fetch_add(1, Ordering::Release);
            }
            done_epoch = epoch;
            idle_since = std::time::Instant::now();
        }
    }
}

/// Sets the team's stop flag when the leader leaves (also when it panics), so that no
/// helper spins forever.
struct StopOnDrop<'a>(&'a Team);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Release);
    }
}

/// Runs `lead` with a team of every thread of rayon's current pool, or returns `None`
/// without running it when the pool has one thread or another team is running.
pub fn with_team<R: Send>(lead: impl FnOnce(&Team) -> R + Send) -> Option<R> {
    let threads = rayon::current_num_threads();
    if threads < 2 {
        return None;
    }
    let _only_team = TEAM_LOCK.try_lock().ok()?;
    Some(lead_team(threads, lead))
}

/// Runs `lead` on the calling thread as the leader of a team of `threads` threads (rayon's
/// current pool must have that many), the others helping.
fn lead_team<R: Send>(threads: usize, lead: impl FnOnce(&Team) -> R + Send) -> R {
    let team = Team::new(threads);
    let lead = Mutex::new(Some(lead));
    let result = Mutex::new(None);
    // The calling thread leads (it runs its own share of the broadcast as soon as it
    // waits), so the step never waits for another thread to become free.
    let leader = rayon::current_thread_index().unwrap_or(0);
    rayon::broadcast(|ctx| {
        if ctx.index() == leader {
            let _stop = StopOnDrop(&team);
            let lead = lead
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .expect("one leader");
            let r = lead(&team);
            *result.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        } else {
            team.help();
        }
    });
    result
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .expect("the leader ran")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_share_runs_once_per_job() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let sums = pool.install(|| {
            lead_team(3, |team| {
                assert_eq!(team.threads(), 3);
                let mut sums = Vec::new();
                for shares in [0usize, 1, 5, 64, 1000] {
                    let counts: Vec<AtomicU32> = (0..shares).map(|_| AtomicU32::new(0)).collect();
                    team.run(shares, &|i| {
                        counts[i].fetch_add(1, Ordering::Relaxed);
                    });
                    assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
                    sums.push(counts.len());
                }
                sums
            })
        });
        assert_eq!(sums, [0, 1, 5, 64, 1000]);
    }

    /// Helpers that wait past their patience leave; the leader then runs every share.
    #[test]
    fn a_late_leader_finishes_alone_after_the_helpers_leave() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let counts: Vec<AtomicU32> = (0..100).map(|_| AtomicU32::new(0)).collect();
        pool.install(|| {
            lead_team(3, |team| {
                std::thread::sleep(HELPER_PATIENCE * 10);
                team.run(counts.len(), &|i| {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                });
            })
        });
        assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
    }

    #[test]
    fn one_thread_or_a_team_already_running_means_no_team() {
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        assert!(one.install(|| with_team(|_| ())).is_none());
        let two = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        // Inside a team (here without the lock, which other tests may hold), no second one.
        let _held = TEAM_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        assert!(two.install(|| with_team(|_| ())).is_none());
    }
}
