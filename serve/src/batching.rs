//! Dynamic batching: calls of one model version that arrive within a short window are run as
//! one call, their inputs joined along axis 0 and the outputs split back, as TensorFlow
//! Serving's batching session does. One task per servable gathers calls; batches run on
//! blocking threads, at most as many at once as the server's concurrency limit.
//!
//! Joining and splitting along axis 0 of row-major tensors is joining and splitting their
//! bytes. A batch is padded with zero rows to the next power of two (at most the largest batch),
//! so the model compiles a few batch sizes rather than one per row count. Calls whose other dimensions or dtypes differ go into separate batches; a model
//! whose outputs do not keep the batch dimension runs each call of the batch on its own.

use crate::config::BatchingConfig;
use crate::error::{Result, ServeError};
use crate::servable::run_model;
use lathe_ir::{DType, Tensor};
use lathe_runtime::Model;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

type Outputs = Result<Vec<(String, Tensor)>>;

/// One call waiting to be batched.
struct Job {
    inputs: Vec<(String, Tensor)>,
    rows: usize,
    reply: oneshot::Sender<Outputs>,
}

impl Job {
    /// What calls must share to be joined: each input's name, dtype and shape past axis 0.
    fn key(&self) -> Vec<(&str, DType, &[usize])> {
        (self.inputs.iter())
            .map(|(n, t)| (n.as_str(), t.dtype(), &t.shape()[1..]))
            .collect()
    }
}

/// The gatherer of one servable's calls.
pub struct Batcher {
    jobs: mpsc::Sender<Job>,
    queue: usize,
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
    /// Starts the gathering task (it ends when the batcher is dropped and its queue drained).
    /// It holds up to `queue` calls waiting; more are refused.
    pub fn start(
        name: &str,
        version: i64,
        model: Arc<Model>,
        config: BatchingConfig,
        queue: usize,
    ) -> Batcher {
        let (jobs, rx) = mpsc::channel(queue.max(1));
        // One batch runs at a time: a batch already runs on every thread the model has, and
        // two at once on the same cores only slice each other (and the server's I/O) in time.
        let runs = Arc::new(Semaphore::new(1));
        let stats = Arc::new(BatchStats::default());
        tokio::spawn(gather(
            name.to_string(),
            version,
            model,
            config,
            rx,
            runs,
            stats.clone(),
        ));
        Batcher {
            jobs,
            queue: queue.max(1),
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
        self.jobs
            .try_send(Job {
                inputs,
                rows,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ServeError::ResourceExhausted(format!(
                    "the model's batching queue holds {} calls, the server's limit",
                    self.queue
                )),
                mpsc::error::TrySendError::Closed(_) => {
                    ServeError::Unavailable("the model is being unloaded".into())
                }
            })?;
        answer
            .await
            .map_err(|_| ServeError::Internal("the batch this call was in failed".into()))?
    }
}

/// Gathers jobs into batches until the channel closes.
async fn gather(
    name: String,
    version: i64,
    model: Arc<Model>,
    config: BatchingConfig,
    mut rx: mpsc::Receiver<Job>,
    runs: Arc<Semaphore>,
    stats: Arc<BatchStats>,
) {
    let mut held: Option<Job> = None;
    loop {
        let first = match held.take() {
            Some(j) => j,
            None => match rx.recv().await {
                Some(j) => j,
                None => return,
            },
        };
        let mut batch = vec![first];
        let mut rows = batch[0].rows;
        let deadline = tokio::time::Instant::now() + config.batch_timeout;
        while rows < config.max_batch_size {
            let next = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(j)) => j,
                Ok(None) | Err(_) => break,
            };
            if next.key() != batch[0].key() || rows + next.rows > config.max_batch_size {
                held = Some(next);
                break;
            }
            rows += next.rows;
            batch.push(next);
        }
        let Ok(permit) = runs.clone().acquire_owned().await else {
            return;
        };
        let padded = padded_rows(rows, config.max_batch_size);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
        stats
            .padding
            .fetch_add((padded - rows) as u64, Ordering::Relaxed);
        let model = model.clone();
        let name = name.clone();
        let max_batch_size = config.max_batch_size;
        tokio::task::spawn_blocking(move || {
            let _span =
                tracing::debug_span!("batch", model = %name, version, calls = batch.len(), rows)
                    .entered();
            run_batch(&name, &model, batch, max_batch_size);
            drop(permit);
        });
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
fn run_batch(name: &str, model: &Model, batch: Vec<Job>, max_batch_size: usize) {
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
