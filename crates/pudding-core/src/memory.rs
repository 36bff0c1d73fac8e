//! A memory budget for running untrusted work (e.g. a downloaded chat template) in process.
//!
//! Fuel and output caps bound what a template *does*, not what it *holds*: a handful of
//! string concatenations double a value forty times. [`run_with_budget`] runs a job on a
//! thread of its own whose allocations [`BudgetedAllocator`] counts; an allocation that would
//! take the thread's live bytes past the budget never returns (the thread sleeps for
//! good, keeping at most the budget), and the caller gets [`BudgetError::OverBudget`] at
//! once. A job cannot
//! be unwound from inside an allocator, and a failed allocation aborts the process, so
//! stranding the thread is the one way to stop it in process.
//!
//! The budget holds only where the binary installs the allocator:
//!
//! ```
//! use pudding_core::memory::{run_with_budget, BudgetedAllocator};
//!
//! #[global_allocator]
//! static ALLOCATOR: BudgetedAllocator = BudgetedAllocator;
//!
//! fn main() {
//!     let doubled = run_with_budget(1 << 20, || "ab".repeat(1000).len());
//!     assert_eq!(doubled, Ok(2000));
//!     let runaway = run_with_budget(1 << 20, || "ab".repeat(1 << 20).len());
//!     assert!(runaway.is_err());
//! }
//! ```
//!
//! Elsewhere [`run_with_budget`] still runs the job (on its own thread) without a bound, and
//! [`budget_enforced`] says so.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// The system allocator, counting the live bytes of threads inside [`run_with_budget`].
pub struct BudgetedAllocator;

/// Set once any allocation has gone through [`BudgetedAllocator`].
static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread's budget in bytes; 0 when the thread is not budgeted.
    static LIMIT: Cell<usize> = const { Cell::new(0) };
    /// Bytes this budgeted thread holds (allocated minus freed since the budget began).
    static LIVE: Cell<usize> = const { Cell::new(0) };
    /// Where to report an exceeded budget: the job's [`Tripwire`].
    static TRIP: Cell<*const AtomicBool> = const { Cell::new(std::ptr::null()) };
}

impl BudgetedAllocator {
    /// Counts `grow` more bytes on a budgeted thread; past its budget, reports and stops
    /// the thread for good.
    #[inline]
    fn charge(grow: usize) {
        let limit = LIMIT.with(Cell::get);
        if limit == 0 {
            return;
        }
        let live = LIVE.with(Cell::get).saturating_add(grow);
        if live > limit {
            let trip = TRIP.with(Cell::get);
            // SAFETY: `run_with_budget` keeps the flag alive (the job's closure owns an
            // `Arc` of it) for as long as the thread runs, which is forever from here.
            if let Some(flag) = unsafe { trip.as_ref() } {
                flag.store(true, Ordering::Release);
            }
            // Neither unwinding nor a null pointer is allowed out of an allocator, and the
            // job must not go on: park the thread without allocating.
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        LIVE.with(|c| c.set(live));
    }

    #[inline]
    fn credit(shrink: usize) {
        if LIMIT.with(Cell::get) != 0 {
            LIVE.with(|c| c.set(c.get().saturating_sub(shrink)));
        }
    }

    #[inline]
    fn note_installed() {
        if !INSTALLED.load(Ordering::Relaxed) {
            INSTALLED.store(true, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the accounting only reads and
// writes this thread's counters and never allocates.
unsafe impl GlobalAlloc for BudgetedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::note_installed();
        Self::charge(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::note_installed();
        Self::charge(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Self::credit(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            Self::charge(new_size - layout.size());
        } else {
            Self::credit(layout.size() - new_size);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Whether [`run_with_budget`] enforces its budget in this process (the binary installed
/// [`BudgetedAllocator`]).
pub fn budget_enforced() -> bool {
    // Make sure at least one allocation has been seen before answering.
    drop(std::hint::black_box(Box::new(0u8)));
    INSTALLED.load(Ordering::Relaxed)
}

/// Why [`run_with_budget`] gave no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The job held more memory than its budget allowed (its thread is stranded).
    #[error("the job held more than its memory budget of {limit} bytes")]
    OverBudget {
        /// The budget in bytes.
        limit: usize,
    },
    /// Earlier jobs of this process were stranded holding so much that another might pass
    /// [`MAX_STRANDED_BYTES`]: the job was not started.
    #[error("jobs stopped at their memory budget hold {stranded} bytes; another could pass the cap of {MAX_STRANDED_BYTES} bytes")]
    TooMuchStranded {
        /// Bytes the stranded jobs may hold (the sum of their budgets).
        stranded: usize,
    },
}

/// The most memory that stranded jobs may hold in one process (the sum of their budgets):
/// past it, [`run_with_budget`] refuses new jobs rather than let hostile input pile up
/// stranded threads (e.g. a server asked again and again to render a hostile template).
pub const MAX_STRANDED_BYTES: usize = 1 << 30;

/// The sum of the budgets of stranded jobs.
static STRANDED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How often the caller looks at the job's tripwire while it waits.
const POLL: Duration = Duration::from_millis(2);

/// Runs `job` on a thread of its own, with at most `limit` bytes allocated and not yet freed
/// by that thread at any time (where [`budget_enforced`]). Returns the job's value, or
/// [`BudgetError::OverBudget`] as soon as an allocation would pass the budget (that thread
/// is then left asleep, holding what it had; [`MAX_STRANDED_BYTES`] caps the total). A panic in the job is resumed on the caller; its panic
/// hook runs on the job's thread under the budget, so keep budgets well above what a hook
/// needs (a few MiB for a backtrace).
pub fn run_with_budget<T, F>(limit: usize, job: F) -> Result<T, BudgetError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let stranded = STRANDED.load(Ordering::Acquire);
    if stranded.saturating_add(limit) > MAX_STRANDED_BYTES {
        return Err(BudgetError::TooMuchStranded { stranded });
    }
    let tripwire = Arc::new(AtomicBool::new(false));
    let (send, receive) = mpsc::sync_channel(1);
    let flag = Arc::clone(&tripwire);
    let handle = std::thread::Builder::new()
        .name("pudding-budgeted".into())
        .spawn(move || {
            TRIP.with(|t| t.set(Arc::as_ptr(&flag)));
            LIVE.with(|c| c.set(0));
            LIMIT.with(|c| c.set(limit.max(1)));
            let value = job();
            LIMIT.with(|c| c.set(0));
            TRIP.with(|t| t.set(std::ptr::null()));
            // The receiver only goes away once the caller has given up on the value.
            let _ = send.send(value);
            drop(flag);
        })
        .expect("spawning a thread");
    loop {
        match receive.recv_timeout(POLL) {
            Ok(value) => {
                let _ = handle.join();
                return Ok(value);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if tripwire.load(Ordering::Acquire) {
                    STRANDED.fetch_add(limit, Ordering::AcqRel);
                    return Err(BudgetError::OverBudget { limit });
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // The job panicked before sending.
                match handle.join() {
                    Err(payload) => std::panic::resume_unwind(payload),
                    Ok(()) => unreachable!("the job ended without a value or a panic"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static ALLOCATOR: BudgetedAllocator = BudgetedAllocator;

    #[test]
    fn a_job_within_its_budget_returns_its_value() {
        assert!(budget_enforced());
        let v = run_with_budget(1 << 20, || vec![7u8; 1000].len()).unwrap();
        assert_eq!(v, 1000);
        // Freed memory is credited back: a loop of allocations stays within a small budget.
        let n = run_with_budget(1 << 20, || {
            (0..10_000)
                .map(|i| vec![0u8; 512 + i % 7].len())
                .sum::<usize>()
        })
        .unwrap();
        assert!(n > 5_000_000);
    }

    #[test]
    fn a_job_past_its_budget_is_stopped() {
        let started = std::time::Instant::now();
        let err = run_with_budget(64 << 20, || {
            let mut s = String::from("ab");
            for _ in 0..40 {
                s = format!("{s}{s}");
            }
            s.len()
        })
        .unwrap_err();
        assert_eq!(err, BudgetError::OverBudget { limit: 64 << 20 });
        assert!(started.elapsed() < Duration::from_secs(30));
        // The caller's own allocations are not counted.
        assert_eq!(vec![1u8; 128 << 20].len(), 128 << 20);
    }

    /// Stranded jobs add up to a cap, past which new jobs are refused.
    #[test]
    fn stranded_jobs_are_capped() {
        let before = STRANDED.load(Ordering::Acquire);
        let huge = MAX_STRANDED_BYTES - before;
        assert!(matches!(
            run_with_budget(huge + 1, || 0),
            Err(BudgetError::TooMuchStranded { .. })
        ));
    }

    #[test]
    #[should_panic(expected = "job's own panic")]
    fn a_panic_in_the_job_reaches_the_caller() {
        // The panic hook allocates on the job's thread (the message, a backtrace): a budget
        // far below what it needs would strand the thread inside the hook.
        let _ = run_with_budget(256 << 20, || -> usize { panic!("job's own panic") });
    }
}
