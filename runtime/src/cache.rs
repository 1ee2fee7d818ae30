//! The bounded, least-recently-used cache of a model's specializations, keyed by
//! [`Signature`], and the detector for models that keep re-specializing.
//!
//! Concurrency: one mutex guards the table, the statistics and the recent-call window, and is
//! held only for bookkeeping, never while compiling. Each signature has a *slot*
//! (`Mutex<Option<Arc<Specialization>>>`) that the first caller to miss fills while holding its
//! lock; a concurrent caller with the same signature finds the slot and waits on that lock, so
//! each signature compiles once however many threads miss on it together, and different
//! signatures compile in parallel. A slot evicted while its compile is in flight still serves
//! the callers that hold it; the specialization is just not kept.
//!
//! The table is a hash map with a last-used tick per entry; eviction scans for the smallest
//! tick. Capacities are small (8 by default), so the scan costs less than keeping a linked
//! order would.

use crate::specialization::{Signature, Specialization};
use crate::weights::WeightPool;
use crate::{ModelStats, RunError};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How many recent calls the re-specialization detector looks at.
pub(crate) const RECENT_CALLS: usize = 10;
/// Warn when at least this many of the recent calls needed a new specialization.
pub(crate) const WARN_MISSES: usize = 5;

/// One signature's specialization, filled by the first caller that misses on it.
pub(crate) type Slot = Mutex<Option<Arc<Specialization>>>;

/// Who is asking: a call of `Model::run` (counted in the statistics and the re-specialization
/// window) or an ahead-of-time compile (`Model::specialize_for`, counted in neither).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    Run,
    AheadOfTime,
}

/// What a lookup found.
pub(crate) struct Lookup {
    /// The signature's slot: filled on a hit, empty while (or until) it compiles.
    pub slot: Arc<Slot>,
    /// The re-specialization warning, the one time it is due.
    pub warning: Option<String>,
}

/// The cache: see the module documentation.
pub(crate) struct SpecializationCache {
    model: String,
    capacity: usize,
    state: Mutex<State>,
    /// The weights of the cached specializations, shared between them.
    weights: WeightPool,
}

struct Entry {
    slot: Arc<Slot>,
    last_used: u64,
}

struct State {
    entries: HashMap<Signature, Entry>,
    /// Ticks once per lookup; entries record the tick of their last use.
    clock: u64,
    /// The last [`RECENT_CALLS`] `run` calls: `Some(signature)` for one that missed.
    recent: VecDeque<Option<Signature>>,
    stats: ModelStats,
}

/// Locks a mutex, ignoring poisoning: every critical section leaves its data consistent, and
/// an empty slot left by a panicking compile is simply compiled again by the next caller.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SpecializationCache {
    /// An empty cache for the model named `model`, holding at most `capacity` (≥ 1)
    /// specializations.
    pub fn new(model: &str, capacity: usize) -> SpecializationCache {
        SpecializationCache {
            model: model.to_string(),
            capacity,
            state: Mutex::new(State {
                entries: HashMap::new(),
                clock: 0,
                recent: VecDeque::with_capacity(RECENT_CALLS),
                stats: ModelStats::default(),
            }),
            weights: WeightPool::default(),
        }
    }

    /// The weights of the cached specializations, for a new one to share.
    pub fn weights(&self) -> &WeightPool {
        &self.weights
    }

    /// Finds `signature`'s slot, or on a miss checks it with `admit` and inserts an empty slot
    /// (evicting the least recently used entry beyond capacity). A signature that `admit`
    /// rejects leaves the cache and the statistics as they were.
    pub fn lookup(
        &self,
        signature: &Signature,
        caller: Caller,
        admit: impl FnOnce() -> Result<(), RunError>,
    ) -> Result<Lookup, RunError> {
        let mut st = lock(&self.state);
        st.clock += 1;
        let now = st.clock;
        let (slot, hit) = match st.entries.get_mut(signature) {
            Some(e) => {
                e.last_used = now;
                (e.slot.clone(), true)
            }
            None => {
                admit()?;
                let slot = Arc::new(Mutex::new(None));
                st.entries.insert(
                    signature.clone(),
                    Entry {
                        slot: slot.clone(),
                        last_used: now,
                    },
                );
                if st.entries.len() > self.capacity {
                    st.evict_least_recently_used();
                }
                (slot, false)
            }
        };
        let mut warning = None;
        if caller == Caller::Run {
            st.stats.calls += 1;
            if hit {
                st.stats.cache_hits += 1;
            }
            if st.recent.len() == RECENT_CALLS {
                st.recent.pop_front();
            }
            st.recent.push_back((!hit).then(|| signature.clone()));
            let misses = st.recent.iter().filter(|r| r.is_some()).count();
            if misses >= WARN_MISSES && !st.stats.warned {
                st.stats.warned = true;
                let signatures: Vec<&Signature> = st.recent.iter().flatten().collect();
                let average = (st.stats.compiles > 0)
                    .then(|| st.stats.compile_time / st.stats.compiles as u32);
                warning = Some(respecialization_warning(
                    &self.model,
                    misses,
                    st.recent.len(),
                    &signatures,
                    average,
                    self.capacity,
                ));
            }
        }
        Ok(Lookup { slot, warning })
    }

    /// Records a finished compile.
    pub fn compiled(&self, time: Duration) {
        let mut st = lock(&self.state);
        st.stats.compiles += 1;
        st.stats.compile_time += time;
    }

    /// Drops `signature`'s entry if it still holds `slot` (after its compile failed), so a
    /// failure does not take a place in the cache.
    pub fn forget(&self, signature: &Signature, slot: &Arc<Slot>) {
        let mut st = lock(&self.state);
        if st
            .entries
            .get(signature)
            .is_some_and(|e| Arc::ptr_eq(&e.slot, slot))
        {
            st.entries.remove(signature);
        }
    }

    /// The number of cached signatures (including any whose compile is in flight).
    pub fn len(&self) -> usize {
        lock(&self.state).entries.len()
    }

    /// The cached signatures, most recently used first.
    pub fn signatures(&self) -> Vec<Signature> {
        let st = lock(&self.state);
        let mut v: Vec<(&Signature, u64)> =
            st.entries.iter().map(|(s, e)| (s, e.last_used)).collect();
        v.sort_by_key(|&(_, t)| std::cmp::Reverse(t));
        v.into_iter().map(|(s, _)| s.clone()).collect()
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> ModelStats {
        lock(&self.state).stats
    }
}

impl State {
    fn evict_least_recently_used(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.last_used)
            .map(|(s, _)| s.clone());
        if let Some(s) = oldest {
            self.entries.remove(&s);
            self.stats.evictions += 1;
            tracing::debug!(signature = %s, "evicted specialization");
        }
    }
}

/// The text of the re-specialization warning: what happens, what it costs, what to do.
pub(crate) fn respecialization_warning(
    model: &str,
    misses: usize,
    window: usize,
    recent: &[&Signature],
    average_compile: Option<Duration>,
    capacity: usize,
) -> String {
    const SHOWN: usize = 4;
    let mut shown: Vec<String> = Vec::new();
    for s in recent.iter().rev() {
        let s = s.to_string();
        if !shown.contains(&s) {
            shown.push(s);
        }
    }
    shown.reverse();
    if shown.len() > SHOWN {
        shown.drain(..shown.len() - SHOWN);
        shown.insert(0, "...".to_string());
    }
    let cost = match average_compile {
        Some(t) => format!(" (about {:.1} ms each so far)", t.as_secs_f64() * 1e3),
        None => String::new(),
    };
    format!(
        "model `{model}` keeps re-specializing because its input shapes keep changing: {misses} \
         of its last {window} calls needed a new specialization (recent signatures: {}), and \
         each one costs a compile{cost}. Give the inputs fixed shapes, or pad or bucket them to \
         a few sizes (at most {capacity}, the specialization cache's capacity), optionally \
         compiling those ahead of time with `Model::specialize_for`. This warning is shown \
         once per model.",
        shown.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use lathe_ir::{DType, TensorType};

    fn sig(n: usize) -> Signature {
        Signature::new(
            Arc::from(vec!["x".to_string()]),
            vec![TensorType::known(DType::F32, &[n, 6])],
        )
    }

    #[test]
    fn warning_text() {
        let sigs: Vec<Signature> = (1..=6).map(sig).collect();
        let recent: Vec<&Signature> = sigs.iter().collect();
        assert_eq!(
            respecialization_warning("m", 6, 10, &recent, Some(Duration::from_micros(2500)), 8),
            "model `m` keeps re-specializing because its input shapes keep changing: 6 of its \
             last 10 calls needed a new specialization (recent signatures: ..., (x: f32[3,6]), \
             (x: f32[4,6]), (x: f32[5,6]), (x: f32[6,6])), and each one costs a compile (about \
             2.5 ms each so far). Give the inputs fixed shapes, or pad or bucket them to a few \
             sizes (at most 8, the specialization cache's capacity), optionally compiling those \
             ahead of time with `Model::specialize_for`. This warning is shown once per model."
        );
        let w = respecialization_warning("m", 5, 5, &recent[..2], None, 8);
        assert!(
            w.contains(
                "5 of its last 5 calls needed a new specialization (recent signatures: \
                 (x: f32[1,6]), (x: f32[2,6])), and each one costs a compile. Give"
            ),
            "{w}"
        );
    }

    #[test]
    fn lookups_count_hits_and_evict_the_least_recently_used() {
        let c = SpecializationCache::new("m", 2);
        let ok = || Ok(());
        let look = |n| c.lookup(&sig(n), Caller::Run, ok).unwrap();
        look(1);
        look(2);
        look(1);
        look(3); // evicts 2, the least recently used
        let cached: Vec<usize> = c
            .signatures()
            .iter()
            .map(|s| s.types()[0].shape.as_known().unwrap()[0])
            .collect();
        assert_eq!(cached, [3, 1]);
        let s = c.stats();
        assert_eq!((s.calls, s.cache_hits, s.evictions), (4, 1, 1));
        // A rejected signature changes nothing.
        let e = c.lookup(&sig(9), Caller::Run, || Err(RunError::Options("no".into())));
        assert!(e.is_err());
        assert_eq!(c.len(), 2);
        assert_eq!(c.stats().calls, 4);
        // Ahead-of-time lookups are not calls.
        c.lookup(&sig(1), Caller::AheadOfTime, ok).unwrap();
        assert_eq!(c.stats().calls, 4);
    }

    #[test]
    fn warns_once_when_half_the_recent_calls_miss() {
        let c = SpecializationCache::new("m", 100);
        let mut warnings = 0;
        for n in 1..=4 {
            warnings += c
                .lookup(&sig(n), Caller::Run, || Ok(()))
                .unwrap()
                .warning
                .iter()
                .count();
        }
        assert_eq!(warnings, 0);
        assert!(!c.stats().warned);
        for n in 5..=30 {
            warnings += c
                .lookup(&sig(n), Caller::Run, || Ok(()))
                .unwrap()
                .warning
                .iter()
                .count();
        }
        assert_eq!(warnings, 1);
        assert!(c.stats().warned);
    }

    #[test]
    fn misses_spread_out_do_not_warn() {
        // One new signature every third call: at most 4 in any 10 calls.
        let c = SpecializationCache::new("m", 100);
        c.lookup(&sig(1), Caller::AheadOfTime, || Ok(())).unwrap();
        for i in 0..60 {
            let n = if i % 3 == 0 { 100 + i } else { 1 };
            let l = c.lookup(&sig(n), Caller::Run, || Ok(())).unwrap();
            assert!(l.warning.is_none(), "call {i}");
        }
    }
}
