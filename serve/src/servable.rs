//! A [`Servable`]: one loaded version of one model, with its signature as clients see it and
//! the gate that holds its calls to the server's concurrency and queue limits.
//!
//! Requests hold an `Arc<Servable>` while they run: a version the repository unloads is
//! dropped only when its last request finishes (drained, never cut off).

use crate::batching::Batcher;
use crate::config::{BatchingConfig, Limits};
use crate::error::{invalid, Result, ServeError};
use crate::placement::{self, RunTimes, INLINE_BELOW};
use lathe_ir::{DType, Dim, Tensor, TensorType};
use lathe_runtime::{Model, ModelOptions, RunError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The signature name every servable answers to: a SavedModel's loaded signature is served
/// under its own name, every other format under this one.
pub const DEFAULT_SIGNATURE: &str = "serving_default";

/// An input or output as metadata describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// `None` when the server cannot tell (an output of a model imported per value).
    pub dtype: Option<DType>,
    /// Each dimension's size, `None` for one of any size; `None` for an unknown rank.
    pub dims: Option<Vec<Option<usize>>>,
}

impl TensorInfo {
    fn of(name: &str, ty: Option<&TensorType>) -> TensorInfo {
        TensorInfo {
            name: name.to_string(),
            dtype: ty.map(|t| t.dtype),
            dims: ty.map(|t| t.shape.dims().iter().map(Dim::known).collect()),
        }
    }

    /// Sizes with -1 for unknown ones (TensorFlow's and KServe's convention).
    pub fn dims_i64(&self) -> Vec<i64> {
        (self.dims.iter().flatten())
            .map(|d| d.map_or(-1, |n| n as i64))
            .collect()
    }
}

/// One loaded model version.
pub struct Servable {
    pub name: String,
    pub version: i64,
    /// The file or SavedModel directory loaded.
    pub path: PathBuf,
    /// The signature's name (see [`DEFAULT_SIGNATURE`]).
    pub signature: String,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    model: Arc<Model>,
    limits: Limits,
    gate: Arc<tokio::sync::Semaphore>,
    queued: AtomicUsize,
    batcher: Option<Batcher>,
    run_times: Arc<RunTimes>,
}

impl std::fmt::Debug for Servable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} version {} ({})",
            self.name,
            self.version,
            self.path.display()
        )
    }
}

/// The model a version directory holds: the directory itself when it is a SavedModel, else
/// its one model file.
pub fn model_path(dir: &Path) -> std::result::Result<PathBuf, String> {
    if dir.join("saved_model.pb").is_file() || dir.join("saved_model.pbtxt").is_file() {
        return Ok(dir.to_path_buf());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| format!("`{}`: {e}", dir.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && (p.extension().and_then(|e| e.to_str()))
                    .is_some_and(|e| ["lathe", "onnx", "pb", "lir"].contains(&e))
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!(
            "`{}` holds no model (a SavedModel, or one `.onnx`, `.pb`, `.lir` or `.lathe` file)",
            dir.display()
        )),
        _ => Err(format!(
            "`{}` holds several models ({}); a version directory holds one",
            dir.display(),
            (found.iter().map(|p| p.display().to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

impl Servable {
    /// Loads version `version` of model `name` from its version directory, and compiles the
    /// specialization for the declared shapes when every input's shape is known (warm-up).
    pub fn load(
        name: &str,
        version: i64,
        dir: &Path,
        options: &ModelOptions,
        limits: &Limits,
        batching: Option<&BatchingConfig>,
    ) -> std::result::Result<Servable, String> {
        let path = model_path(dir)?;
        let model = Model::open(&path, options.clone()).map_err(|e| e.to_string())?;
        let graph = model.graph();
        let inputs = (model.inputs().iter())
            .map(|i| TensorInfo::of(&i.name, Some(&i.ty)))
            .collect::<Vec<_>>();
        let outputs = (model.outputs().iter().enumerate())
            .map(|(k, o)| {
                let ty = graph.and_then(|g| Some(g.value_type(g.outputs().get(k)?.value)));
                TensorInfo::of(o, ty)
            })
            .collect();
        let types: Option<Vec<TensorType>> = (model.inputs().iter())
            .map(|i| i.ty.shape.is_known().then(|| i.ty.clone()))
            .collect();
        if let Some(types) = types {
            let start = std::time::Instant::now();
            model.specialize_for(&types).map_err(|e| {
                format!(
                    "`{}`: compiling for the declared shapes: {e}",
                    path.display()
                )
            })?;
            tracing::info!(
                model = name,
                version,
                ms = start.elapsed().as_secs_f64() * 1e3,
                "warmed up"
            );
        }
        let model = Arc::new(model);
        let batcher = batching
            .filter(|_| batchable(&inputs))
            .map(|b| Batcher::start(name, version, model.clone(), b.clone(), limits.max_queued));
        let servable = Servable {
            name: name.to_string(),
            version,
            signature: DEFAULT_SIGNATURE.to_string(),
            path,
            inputs,
            outputs,
            model: model.clone(),
            limits: limits.clone(),
            gate: Arc::new(tokio::sync::Semaphore::new(
                limits.max_concurrent_runs.max(1),
            )),
            queued: AtomicUsize::new(0),
            batcher,
            run_times: Arc::new(RunTimes::new(model.options().cache_capacity, INLINE_BELOW)),
        };
        let replayed = crate::warmup::replay(&servable, dir, limits.max_request_bytes)?;
        if replayed > 0 {
            tracing::info!(
                model = name,
                version,
                requests = replayed,
                "replayed the warm-up requests"
            );
        }
        Ok(servable)
    }

    /// Runs checked inputs now, on this thread, outside the gate (warm-up, before the version
    /// is available).
    pub fn run_now(&self, inputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
        run_model(&self.name, &self.model, inputs)
    }

    /// The loaded model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Whether calls are batched.
    pub fn batching(&self) -> bool {
        self.batcher.is_some()
    }

    /// What dynamic batching has run so far, when calls are batched.
    pub fn batch_stats(&self) -> Option<&crate::batching::BatchStats> {
        self.batcher.as_ref().map(Batcher::stats)
    }

    /// Calls waiting to run.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// The input named `name`.
    pub fn input(&self, name: &str) -> Result<&TensorInfo> {
        self.inputs.iter().find(|i| i.name == name).ok_or_else(|| {
            invalid!(
                "model `{}` has no input named `{name}` (its inputs: {})",
                self.name,
                names(&self.inputs)
            )
        })
    }

    /// Checks a signature name against the one served (empty is the default).
    pub fn check_signature(&self, signature: &str) -> Result<()> {
        if signature.is_empty() || signature == self.signature {
            Ok(())
        } else {
            Err(ServeError::NotFound(format!(
                "model `{}` version {} has no signature `{signature}` (it serves `{}`)",
                self.name, self.version, self.signature
            )))
        }
    }

    /// Checks each input's name, dtype and shape against the signature, and that every input
    /// is given once: the error names the input.
    pub fn check_inputs(&self, inputs: &[(String, Tensor)]) -> Result<()> {
        for (k, (name, t)) in inputs.iter().enumerate() {
            if inputs[..k].iter().any(|(n, _)| n == name) {
                return Err(invalid!("input `{name}` is given more than once"));
            }
            let info = self.input(name)?;
            if let Some(d) = info.dtype {
                if d != t.dtype() {
                    return Err(invalid!(
                        "input `{name}` of model `{}` is {d}, the request gives {}",
                        self.name,
                        t.dtype()
                    ));
                }
            }
            if let Some(dims) = &info.dims {
                let fits = dims.len() == t.shape().len()
                    && dims
                        .iter()
                        .zip(t.shape())
                        .all(|(d, &n)| d.is_none_or(|d| d == n));
                if !fits {
                    return Err(invalid!(
                        "input `{name}` of model `{}` has shape {}, the request gives {:?}",
                        self.name,
                        shape_text(dims),
                        t.shape()
                    ));
                }
            }
        }
        if let Some(missing) = self
            .inputs
            .iter()
            .find(|i| !inputs.iter().any(|(n, _)| *n == i.name))
        {
            return Err(invalid!(
                "input `{}` of model `{}` is missing (its inputs: {})",
                missing.name,
                self.name,
                names(&self.inputs)
            ));
        }
        Ok(())
    }

    /// Runs the model on checked inputs ([`Servable::check_inputs`]) within the server's
    /// limits, returning the outputs in `wanted` (every output when empty) in that order.
    pub async fn run(
        self: &Arc<Self>,
        inputs: Vec<(String, Tensor)>,
        wanted: &[String],
    ) -> Result<Vec<(String, Tensor)>> {
        for w in wanted {
            if !self.outputs.iter().any(|o| o.name == *w) {
                return Err(invalid!(
                    "model `{}` has no output named `{w}` (its outputs: {})",
                    self.name,
                    names(&self.outputs)
                ));
            }
        }
        let timeout = self.limits.request_timeout;
        let outputs = tokio::time::timeout(timeout, self.run_gated(inputs))
            .await
            .map_err(|_| {
                ServeError::DeadlineExceeded(format!(
                    "model `{}` did not answer within the server's timeout of {timeout:?}",
                    self.name
                ))
            })??;
        if wanted.is_empty() {
            return Ok(outputs);
        }
        let mut outputs: Vec<Option<(String, Tensor)>> = outputs.into_iter().map(Some).collect();
        Ok(wanted
            .iter()
            .filter_map(|w| {
                outputs
                    .iter_mut()
                    .find(|o| o.as_ref().is_some_and(|(n, _)| n == w))?
                    .take()
            })
            .collect())
    }

    async fn run_gated(
        self: &Arc<Self>,
        inputs: Vec<(String, Tensor)>,
    ) -> Result<Vec<(String, Tensor)>> {
        if let Some(batcher) = &self.batcher {
            if let Some(rows) = batch_rows(&inputs) {
                return batcher.submit(inputs, rows).await;
            }
        }
        let permit = self.permit().await?;
        let shapes = inputs.iter().map(|(_, t)| t.shape().to_vec()).collect();
        let (name, model) = (self.name.clone(), self.model.clone());
        // The permit goes with the run: a call that times out still holds it until the model
        // returns, so the limit counts what really runs.
        placement::run(&self.run_times, shapes, move || {
            let outputs = run_model(&name, &model, inputs);
            drop(permit);
            outputs
        })
        .await
        .map_err(|e| {
            ServeError::Internal(format!("model `{}`: the call panicked: {e}", self.name))
        })?
    }

    /// A turn to run within the concurrency limit, waiting for one if the queue limit allows.
    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        let closed = || ServeError::Unavailable("the server is shutting down".into());
        match self.gate.clone().try_acquire_owned() {
            Ok(permit) => Ok(permit),
            Err(tokio::sync::TryAcquireError::Closed) => Err(closed()),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                // Counted while it waits, however the wait ends (a timeout drops it).
                let _waiting =
                    Waiting::enter(&self.queued, self.limits.max_queued).ok_or_else(|| {
                        ServeError::ResourceExhausted(format!(
                            "model `{}` already has {} calls waiting to run, the server's limit",
                            self.name, self.limits.max_queued
                        ))
                    })?;
                self.gate
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| closed())
            }
        }
    }
}

/// A call counted among those waiting to run while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    /// Counts a call in, unless `limit` are waiting already.
    fn enter(count: &'a AtomicUsize, limit: usize) -> Option<Waiting<'a>> {
        if count.fetch_add(1, Ordering::Relaxed) >= limit {
            count.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Waiting(count))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `model` on named inputs, the runtime's errors sorted into the caller's and the model's.
pub(crate) fn run_model(
    name: &str,
    model: &Model,
    inputs: Vec<(String, Tensor)>,
) -> Result<Vec<(String, Tensor)>> {
    // The tensors move into the call; only the names stay here to be borrowed.
    let (names, tensors): (Vec<String>, Vec<Tensor>) = inputs.into_iter().unzip();
    let args: Vec<(&str, Tensor)> = names.iter().map(String::as_str).zip(tensors).collect();
    model.run(&args).map_err(|e| match e {
        RunError::UnknownInput { .. }
        | RunError::MissingInput { .. }
        | RunError::DuplicateInput { .. }
        | RunError::Specialize(_)
        | RunError::ValueKey { .. } => invalid!("model `{name}`: {e}"),
        e => ServeError::Internal(format!("model `{name}`: {e}")),
    })
}

/// Whether calls of a model with these inputs can be batched: every input has a rank and a
/// first dimension of any size.
fn batchable(inputs: &[TensorInfo]) -> bool {
    !inputs.is_empty()
        && inputs
            .iter()
            .all(|i| (i.dims.as_ref()).is_some_and(|d| matches!(d.first(), Some(None))))
}

/// The rows of a call: the first dimension, when every input has the same one.
fn batch_rows(inputs: &[(String, Tensor)]) -> Option<usize> {
    let first = *inputs.first()?.1.shape().first()?;
    inputs
        .iter()
        .all(|(_, t)| t.shape().first() == Some(&first))
        .then_some(first)
}

fn names(infos: &[TensorInfo]) -> String {
    infos
        .iter()
        .map(|i| format!("`{}`", i.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn shape_text(dims: &[Option<usize>]) -> String {
    let d: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".into(), |n| n.to_string()))
        .collect();
    format!("[{}]", d.join(", "))
}
