//! Where a call runs: on the async worker that read the request, or on a blocking thread.
//!
//! Handing a call to a blocking thread and its result back costs two thread wake-ups, about
//! 30 µs on a loaded two-core machine: a third of a small MLP's own run. A call known to be
//! short therefore runs where the request was read, as the JSON parsing before it does; one
//! that may be long (the first call of a shape, which compiles it, or any shape whose calls
//! take longer than [`INLINE_BELOW`]) goes to a blocking thread so that it never holds up the
//! other connections of that worker.
//!
//! What is known is per input shape: the recent run time of calls of that shape. Shapes are
//! remembered only while the model's specialization cache holds them all, so a call taken
//! inline never compiles (a shape evicted from the cache would).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest recent run time of a shape whose single calls run inline.
pub const INLINE_BELOW: Duration = Duration::from_micros(500);

/// Where one call runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Inline,
    Blocking,
}

/// Recent run times per input shape (the shapes of every input, in order).
#[derive(Debug)]
pub struct RunTimes {
    inner: Mutex<Inner>,
    /// How many shapes the model keeps compiled: no more are remembered.
    capacity: usize,
    /// The longest recent run time of a shape whose calls run inline.
    limit: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    /// Nanoseconds, a moving average per shape; `u64::MAX` until timed.
    times: HashMap<Vec<Vec<usize>>, u64>,
    /// More shapes were called than the model keeps compiled: any call may compile.
    overflowed: bool,
}

impl RunTimes {
    /// Run times of a model keeping `capacity` shapes compiled, whose calls run inline when
    /// their shape's recent run time is below `limit`.
    pub fn new(capacity: usize, limit: Duration) -> RunTimes {
        RunTimes {
            inner: Mutex::new(Inner::default()),
            capacity,
            limit,
        }
    }

    /// Where a call of these input shapes runs.
    pub fn place(&self, shapes: &[Vec<usize>]) -> Place {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match inner.times.get(shapes) {
            Some(&ns) if !inner.overflowed && ns < self.limit.as_nanos() as u64 => Place::Inline,
            _ => Place::Blocking,
        }
    }

    /// Records a finished call. A shape's first call is its compile: it is remembered as
    /// seen but not timed, and its second call sets the time.
    pub fn record(&self, shapes: Vec<Vec<usize>>, took: Duration) {
        let ns = took.as_nanos().min(u128::from(u64::MAX / 2)) as u64;
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let full = inner.times.len() >= self.capacity;
        match inner.times.get_mut(&shapes) {
            Some(t) if *t == u64::MAX => *t = ns,
            Some(t) => *t = (*t / 8) * 7 + ns / 8,
            None if !full => {
                inner.times.insert(shapes, u64::MAX);
            }
            // Calls may recompile from now on: none is taken inline.
            None => inner.overflowed = true,
        }
    }
}

/// Runs `work`, a call of input shapes `shapes`, where `times` places it (here, or on a
/// blocking thread, awaited), and records how long it took.
pub async fn run<R: Send + 'static>(
    times: &Arc<RunTimes>,
    shapes: Vec<Vec<usize>>,
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<R, tokio::task::JoinError> {
    let place = times.place(&shapes);
    let recorder = times.clone();
    let timed = move || {
        let start = Instant::now();
        let r = work();
        recorder.record(shapes, start.elapsed());
        r
    };
    match place {
        Place::Inline => Ok(timed()),
        Place::Blocking => tokio::task::spawn_blocking(timed).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_runs_inline_once_timed_short_and_not_after_the_cache_overflows() {
        let times = RunTimes::new(2, INLINE_BELOW);
        let a = vec![vec![1, 784]];
        let b = vec![vec![2, 784]];
        let c = vec![vec![3, 784]];
        assert_eq!(times.place(&a), Place::Blocking);
        times.record(a.clone(), Duration::from_millis(80)); // the compile
        assert_eq!(times.place(&a), Place::Blocking);
        times.record(a.clone(), Duration::from_micros(60));
        assert_eq!(times.place(&a), Place::Inline);
        // A slow shape stays on blocking threads.
        times.record(b.clone(), Duration::from_millis(80));
        times.record(b.clone(), Duration::from_millis(3));
        assert_eq!(times.place(&b), Place::Blocking);
        // A third shape where two are kept: nothing runs inline any more.
        times.record(c.clone(), Duration::from_millis(80));
        assert_eq!(times.place(&a), Place::Blocking);
        times.record(a.clone(), Duration::from_micros(60));
        assert_eq!(times.place(&a), Place::Blocking);
        assert_eq!(times.place(&c), Place::Blocking);
    }
}
