//! A small thread pool for splitting one kernel across cores with microsecond latency.
//!
//! A model runs a few dozen kernels per call, some of them only microseconds long, so handing
//! work to another core must cost well under a microsecond. Workers therefore wait for a short
//! while ([`SPIN`]) after each job, watching an epoch counter (spinning at first, then yielding
//! their core between looks), and only then sleep on a condition variable. The calling thread
//! always takes part in its own job.
//!
//! A job is `n` tasks, `f(0) .. f(n-1)`, claimed from a shared counter. The caller returns once
//! every task has *finished*; tasks are only run after being claimed, so once all are finished
//! no worker can touch `f` again, which is what makes lending it a borrowed closure sound.
//!
//! One pool serves one job at a time. A caller that finds it busy (another thread is running a
//! call of the same model) runs its tasks itself, in order: results never depend on threads.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker waits for the next job before sleeping, unless the pool is made
/// with another wait ([`ThreadPool::with_idle_spin`]).
pub const SPIN: Duration = Duration::from_micros(200);

/// How long of that wait the worker spins without yielding its core: the gaps between the
/// kernels of one call. After it, the worker yields between looks.
const HOT: Duration = Duration::from_micros(20);

/// The closure of a job, with its lifetime erased (see the module notes for why that is sound).
type TaskFn = *const (dyn Fn(usize) + Sync);

/// One job: the tasks, who claimed what, and how many are done.
struct Job {
    f: TaskFn,
    n: usize,
    next: AtomicUsize,
    done: AtomicUsize,
}

// SAFETY: `f` points at a `Sync` closure that outlives every use (see `Job::work`); the
// counters are atomics.
unsafe impl Send for Job {}
// SAFETY: as for `Send`: workers only call the `Sync` closure through a shared reference and
// update the atomic counters.
unsafe impl Sync for Job {}

impl Job {
    /// Claims and runs tasks until none are left.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.n {
                return;
            }
            // SAFETY: task `i` was claimed and is not finished, so the caller is still waiting
            // in `ThreadPool::run` and the closure is alive.
            unsafe { (*self.f)(i) };
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

struct Shared {
    epoch: AtomicU64,
    job: Mutex<Option<Arc<Job>>>,
    sleep: Mutex<()>,
    wake: Condvar,
    sleepers: AtomicUsize,
    shutdown: AtomicBool,
    /// How long an idle worker spins before sleeping.
    spin: Duration,
}

/// A pool of `threads - 1` workers plus the calling thread.
pub struct ThreadPool {
    shared: Arc<Shared>,
    busy: Mutex<()>,
    workers: Vec<JoinHandle<()>>,
    threads: usize,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("threads", &self.threads)
            .finish()
    }
}

impl ThreadPool {
    /// A pool running jobs on `threads` threads (the caller and `threads - 1` workers).
    pub fn new(threads: usize) -> ThreadPool {
        ThreadPool::with_idle_spin(threads, SPIN)
    }

    /// A pool whose idle workers spin for `spin` before sleeping. Spinning makes the next job
    /// start within a microsecond, and takes the core from anything else that would run on
    /// it: a server doing its I/O on the same cores wants less than [`SPIN`].
    pub fn with_idle_spin(threads: usize, spin: Duration) -> ThreadPool {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: Mutex::new(None),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            spin,
        });
        let workers = (1..threads)
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("lathe-worker-{i}"))
                    .spawn(move || worker(&shared))
                    .expect("spawning a lathe worker thread")
            })
            .collect();
        ThreadPool {
            shared,
            busy: Mutex::new(()),
            workers,
            threads,
        }
    }

    /// How many threads a job may run on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(0)`, …, `f(n - 1)`, spread over the pool, and returns when all have finished.
    /// With one task, one thread, or the pool busy with another caller's job, runs them all
    /// on the calling thread.
    pub fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        if n == 0 {
            return;
        }
        if n == 1 || self.threads == 1 {
            (0..n).for_each(f);
            return;
        }
        let _guard = match self.busy.try_lock() {
            Ok(g) => g,
            Err(TryLockError::WouldBlock) => {
                (0..n).for_each(f);
                return;
            }
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        // SAFETY: the lifetime is erased only for the duration of this call: we do not return
        // before every task has finished (below), and no task runs unless claimed.
        let f: TaskFn = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), TaskFn>(f) };
        let job = Arc::new(Job {
            f,
            n,
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
        });
        *lock(&self.shared.job) = Some(job.clone());
        self.shared.epoch.fetch_add(1, Ordering::Release);
        if self.shared.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = lock(&self.shared.sleep);
            self.shared.wake.notify_all();
        }
        job.work();
        while job.done.load(Ordering::Acquire) < n {
            std::hint::spin_loop();
        }
        *lock(&self.shared.job) = None;
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.epoch.fetch_add(1, Ordering::Release);
        {
            let _g = lock(&self.shared.sleep);
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn worker(shared: &Shared) {
    // The epoch the pool was created with, not the one seen when this thread starts running:
    // a job or a shutdown may already have been announced by then.
    let mut seen = 0;
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        while shared.epoch.load(Ordering::Acquire) == seen {
            spins = spins.wrapping_add(1);
            let waited = if spins.is_multiple_of(64) {
                start.elapsed()
            } else {
                Duration::ZERO
            };
            if waited > HOT {
                // Past the gaps between one call's kernels: keep watching, but give the core
                // to any other thread that wants it (a server's I/O), and keep it awake when
                // none does (waking a sleeping core costs tens of microseconds on a VM).
                std::thread::yield_now();
            }
            if waited > shared.spin {
                let g = lock(&shared.sleep);
                shared.sleepers.fetch_add(1, Ordering::SeqCst);
                let g = shared
                    .wake
                    .wait_while(g, |_| shared.epoch.load(Ordering::SeqCst) == seen)
                    .unwrap_or_else(|p| p.into_inner());
                shared.sleepers.fetch_sub(1, Ordering::SeqCst);
                drop(g);
                break;
            }
            std::hint::spin_loop();
        }
        // Read the epoch before the shutdown flag: `Drop` sets the flag before bumping the
        // epoch, so seeing its bump means seeing the flag (reading them the other way round
        // could miss both and sleep forever).
        seen = shared.epoch.load(Ordering::Acquire);
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let job = lock(&shared.job).clone();
        if let Some(job) = job {
            job.work();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_once() {
        let pool = ThreadPool::new(3);
        for n in [0, 1, 2, 7, 100] {
            let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
            pool.run(n, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "n={n}");
        }
    }

    #[test]
    fn many_jobs_after_workers_sleep() {
        let pool = ThreadPool::new(2);
        let total = AtomicUsize::new(0);
        for round in 0..50 {
            if round % 10 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
            pool.run(8, &|i| {
                total.fetch_add(i, Ordering::Relaxed);
            });
        }
        assert_eq!(total.load(Ordering::Relaxed), 50 * 28);
    }

    #[test]
    fn pools_drop_promptly_whatever_their_workers_are_doing() {
        for i in 0..200 {
            let pool = ThreadPool::new(3);
            if i % 2 == 0 {
                pool.run(4, &|_| {});
            }
            drop(pool);
        }
    }

    #[test]
    fn concurrent_callers_share_one_pool() {
        let pool = Arc::new(ThreadPool::new(2));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        let sum = AtomicUsize::new(0);
                        pool.run(16, &|i| {
                            sum.fetch_add(i, Ordering::Relaxed);
                        });
                        assert_eq!(sum.load(Ordering::Relaxed), 120);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
}
