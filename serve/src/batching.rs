//! Dynamic batching: calls of one model version that arrive within a short window are run as
//! one call, their inputs joined along axis 0 and the outputs split back, as TensorFlow
//! Serving's batching session does.
//!
//! Calls wait in a queue; one task per servable forms and runs the batches, one at a time (a
//! batch already runs on every thread the model has). The task is woken only when a window
//! opens (a call arrives at an empty queue) and when the queue fills a batch, not once per
//! call: on a small machine under load, waking a task per call costs more than the rows of
//! the batch do. A batch known to run briefly runs on that task's own thread; one that may be
//! long (the first of its size, which compiles it, or a size whose batches take longer than
//! [`BATCH_INLINE_BELOW`]) on a blocking thread.
//!
//! Joining and splitting along axis 0 of row-major tensors is joining and splitting their
//! bytes. A batch is padded with zero rows to the next power of two (at most the largest
//! batch), so the model compiles a few batch sizes rather than one per row count. Calls whose
//! other dimensions or dtypes differ go into separate batches; a model whose outputs do not
//! keep the batch dimension runs each call of the batch on its own.

use crate::config::BatchingConfig;
use crate::error::{Result, ServeError};
use crate::placement::{self, RunTimes};
use crate::servable::run_model;
use lathe_ir::{DType, Tensor};
use lathe_runtime::Model;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

/// The longest recent run time of a batch size whose batches run on the batching task's own
/// thread. Longer than a single call's limit ([`crate::placement::INLINE_BELOW`]): batches
/// run one at a time, so at most one of the server's async workers is held by one.
pub const BATCH_INLINE_BELOW: Duration = Duration::from_millis(2);

type Outputs = Result<Vec<(String, Tensor)>>;

/// One call waiting to be batched.
struct Job {
    inputs: Vec<(String, Tensor)>,
    rows: usize,
    reply: oneshot::Sender<Outputs>,
    arrived: Instant,
}

impl Job {
    /// What calls must share to be joined: each input's name, dtype and shape past axis 0.
    fn key(&self) -> Vec<(&str, DType, &[usize])> {
        (self.inputs.iter())
            .map(|(n, t)| (n.as_str(), t.dtype(), &t.shape()[1..]))
            .collect()
    }
}

/// The calls waiting, shared by the callers and the batching task.
struct Queue {
    jobs: Mutex<Pending>,
    /// Wakes the batching task: a window opened, a batch filled, or the batcher was dropped.
    wake: Notify,
}

#[derive(Default)]
struct Pending {
    jobs: VecDeque<Job>,
    rows: usize,
    closed: bool,
}

/// The batcher of one servable's calls.
pub struct Batcher {
    queue: Arc<Queue>,
    config: BatchingConfig,
    limit: usize,
    stats: Arc<BatchStats>,
}

/// What a batcher has run so far.
#[derive(Debug, Default)]
pub struct BatchStats {
    /// Batches run.
    pub batches: AtomicU64,
    /// Calls' rows run in them.
    pub rows: AtomicU64,
    /// Zero rows added to reach an allowed batch size.
    pub padding: AtomicU64,
}

impl Batcher {
    /// Starts the batching task (it ends when the batcher is dropped and its queue drained).
    /// Up to `queue` calls wait; more are refused.
    pub fn start(
        name: &str,
        version: i64,
        model: Arc<Model>,
        config: BatchingConfig,
        queue: usize,
    ) -> Batcher {
        let shared = Arc::new(Queue {
            jobs: Mutex::new(Pending::default()),
            wake: Notify::new(),
        });
        let stats = Arc::new(BatchStats::default());
        let task = Task {
            name: name.to_string(),
            version,
            run_times: Arc::new(RunTimes::new(
                model.options().cache_capacity,
                BATCH_INLINE_BELOW,
            )),
            model,
            config: config.clone(),
            queue: shared.clone(),
            stats: stats.clone(),
        };
        tokio::spawn(task.run());
        Batcher {
            queue: shared,
            config,
            limit: queue.max(1),
            stats,
        }
    }

    /// What this batcher has run so far.
    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }

    /// Queues a call of `rows` rows and waits for its outputs.
    pub async fn submit(&self, inputs: Vec<(String, Tensor)>, rows: usize) -> Outputs {
        let (reply, answer) = oneshot::channel();
        let wake = {
            let mut p = lock(&self.queue.jobs);
            if p.closed {
                return Err(ServeError::Unavailable(
                    "the model is being unloaded".into(),
                ));
            }
            if p.jobs.len() >= self.limit {
                return Err(ServeError::ResourceExhausted(format!(
                    "the model's batching queue holds {} calls, the server's limit",
                    self.limit
                )));
            }
            let opened = p.jobs.is_empty();
            let was_full = p.rows >= self.config.max_batch_size;
            p.rows += rows;
            p.jobs.push_back(Job {
                inputs,
                rows,
                reply,
                arrived: Instant::now(),
            });
            opened || (!was_full && p.rows >= self.config.max_batch_size)
        };
        if wake {
            self.queue.wake.notify_one();
        }
        answer
            .await
            .map_err(|_| ServeError::Internal("the batch this call was in failed".into()))?
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        lock(&self.queue.jobs).closed = true;
        self.queue.wake.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The batching task of one servable.
struct Task {
    name: String,
    version: i64,
    model: Arc<Model>,
    config: BatchingConfig,
    queue: Arc<Queue>,
    stats: Arc<BatchStats>,
    run_times: Arc<RunTimes>,
}

impl Task {
    /// Forms and runs batches until the batcher is dropped and no call waits.
    async fn run(self) {
        loop {
            // Wait for a batch: full, or its oldest call's window over.
            let batch = loop {
                let due = {
                    let mut p = lock(&self.queue.jobs);
                    match p.jobs.front() {
                        None if p.closed => return,
                        None => None,
                        Some(first) => {
                            let due = first.arrived + self.config.batch_timeout;
                            if p.rows >= self.config.max_batch_size
                                || Instant::now() >= due
                                || p.closed
                            {
                                break self.take(&mut p);
                            }
                            Some(due)
                        }
                    }
                };
                match due {
                    None => self.queue.wake.notified().await,
                    Some(due) => {
                        let _ =
                            tokio::time::timeout_at(due.into(), self.queue.wake.notified()).await;
                    }
                }
            };
            self.run_batch(batch).await;
        }
    }

    /// Takes the calls of the next batch from the front of the queue: those that share the
    /// first one's key, up to the largest batch.
    fn take(&self, p: &mut Pending) -> Vec<Job> {
        let first = p.jobs.pop_front().expect("a call waits");
        let key = first.key();
        let mut rows = first.rows;
        let mut rest = Vec::new();
        let mut k = 0;
        while k < p.jobs.len() && rows < self.config.max_batch_size {
            let next = &p.jobs[k];
            if rows + next.rows <= self.config.max_batch_size && next.key() == key {
                rows += next.rows;
                rest.push(p.jobs.remove(k).expect("in range"));
            } else {
                k += 1;
            }
        }
        drop(key);
        p.rows -= rows;
        let mut batch = vec![first];
        batch.append(&mut rest);
        batch
    }

    async fn run_batch(&self, batch: Vec<Job>) {
        let rows: usize = batch.iter().map(|j| j.rows).sum();
        let padded = padded_rows(rows, self.config.max_batch_size);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
        (self.stats.padding).fetch_add((padded - rows) as u64, Ordering::Relaxed);
        let shapes: Vec<Vec<usize>> = (batch[0].inputs.iter())
            .map(|(_, t)| {
                let mut d = t.shape().to_vec();
                d[0] = padded;
                d
            })
            .collect();
        let (name, version, calls) = (self.name.clone(), self.version, batch.len());
        let model = self.model.clone();
        let max = self.config.max_batch_size;
        // A batch that panicked has dropped its callers' replies: they are answered already.
        let _ = placement::run(&self.run_times, shapes, move || {
            let _span =
                tracing::debug_span!("batch", model = %name, version, calls, rows).entered();
            run_joined(&name, &model, batch, max);
        })
        .await;
    }
}

/// The batch size a batch of `rows` rows runs at: the next power of two, or `max` (TensorFlow
/// Serving's allowed batch sizes, with padding). Each size run is a specialization the model
/// compiles once; without this every row count would be one, and more of them than the
/// specialization cache holds.
pub fn padded_rows(rows: usize, max: usize) -> usize {
    if rows >= max {
        rows
    } else {
        rows.next_power_of_two().min(max)
    }
}

/// Runs the jobs of one batch, joined and padded with zero rows to an allowed batch size, and
/// answers each with its rows.
fn run_joined(name: &str, model: &Model, batch: Vec<Job>, max_batch_size: usize) {
    let total: usize = batch.iter().map(|j| j.rows).sum();
    let padded = padded_rows(total, max_batch_size);
    let joined: Vec<(String, Tensor)> = (0..batch[0].inputs.len())
        .map(|k| {
            let (input, first) = &batch[0].inputs[k];
            let per_row = first.size_bytes() / batch[0].rows.max(1);
            let mut bytes = Vec::with_capacity(per_row * padded);
            for job in &batch {
                bytes.extend_from_slice(&job.inputs[k].1.to_le_bytes());
            }
            bytes.resize(per_row * padded, 0);
            let mut dims = first.shape().to_vec();
            dims[0] = padded;
            let t = Tensor::from_le_bytes(first.dtype(), &dims, &bytes)
                .expect("joined rows fill the shape");
            (input.clone(), t)
        })
        .collect();
    let outputs = match run_model(name, model, joined) {
        Ok(o) => o,
        // One bad call must not fail the others: run each alone.
        Err(_) if batch.len() > 1 => return run_each(name, model, batch),
        Err(e) => {
            let job = batch.into_iter().next().expect("one job");
            let _ = job.reply.send(Err(e));
            return;
        }
    };
    if !outputs
        .iter()
        .all(|(_, t)| t.shape().first() == Some(&padded))
    {
        return run_each(name, model, batch);
    }
    let bytes: Vec<Vec<u8>> = outputs.iter().map(|(_, t)| t.to_le_bytes()).collect();
    let mut row = 0;
    for job in batch {
        let mine = (outputs.iter().zip(&bytes))
            .map(|((n, t), b)| {
                let per_row = b.len() / padded;
                let mut dims = t.shape().to_vec();
                dims[0] = job.rows;
                let part = &b[row * per_row..(row + job.rows) * per_row];
                (
                    n.clone(),
                    Tensor::from_le_bytes(t.dtype(), &dims, part).expect("rows of the output"),
                )
            })
            .collect();
        row += job.rows;
        let _ = job.reply.send(Ok(mine));
    }
}

fn run_each(name: &str, model: &Model, batch: Vec<Job>) {
    for job in batch {
        let _ = job.reply.send(run_model(name, model, job.inputs));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn batches_are_padded_to_powers_of_two_up_to_the_largest() {
        let sizes: Vec<usize> = (1..=20).map(|r| super::padded_rows(r, 12)).collect();
        assert_eq!(
            sizes,
            [1, 2, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12, 13, 14, 15, 16, 17, 18, 19, 20]
        );
    }
}
