//! [`Model`]: a loaded graph that runs each call on the specialization for the call's input
//! signature, compiling specializations on first use and caching them (see `cache.rs` for the
//! cache and its concurrency). A model whose importer needs input values keeps its source
//! instead of a graph and imports it once per value ([`Model::from_import`]).

use crate::cache::{lock, Caller, Lookup, SpecializationCache};
use crate::cpu::ThreadPool;
use crate::specialization::{Keep, Signature, Specialization};
use crate::{Backend, RunError};
use lathe_compiler::artifact::{Artifact, ArtifactError, ArtifactFile};
use lathe_compiler::pipeline::{NoHooks, PassHooks, PassRecord, Pipeline};
use lathe_compiler::specialize::{check_signature, SpecializeError};
use lathe_compiler::{BoundImport, ImportError, SpecializedGraph};
use lathe_ir::{DType, Graph, GraphInput, Tensor, TensorType};
use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The most elements a shape input may have (a shape or a list of axes has a few), and an
/// input the importer needs the value of (a `Resize`'s scales): the most a specialization may
/// be keyed by.
const MAX_SHAPE_INPUT: usize = 64;

/// How a model compiles and runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelOptions {
    /// Where the computation runs.
    pub backend: Backend,
    /// The optimization level each specialization is compiled at, 0–3 (above 3 is 3).
    pub opt_level: u8,
    /// A pipeline to run on each specialization instead of `opt_level`'s, as text
    /// (`fixed-point(fold-constants,cse),fuse`; see `lathe_compiler::pipeline::Pipeline::parse`).
    pub passes: Option<String>,
    /// How many specializations (one per input signature) are kept; at least 1.
    pub cache_capacity: usize,
    /// Threads the CPU backend may use for one call; `None` means one per core. The
    /// interpreter runs each call on the caller's thread.
    pub threads: Option<usize>,
    /// How long the CPU backend's idle worker threads spin, waiting for the next kernel,
    /// before they sleep. Long enough to span the gaps between one call's kernels and between
    /// calls made back to back; a server whose I/O shares the cores wants it short.
    pub idle_spin: std::time::Duration,
}

impl Default for ModelOptions {
    fn default() -> ModelOptions {
        ModelOptions {
            backend: Backend::Cpu,
            opt_level: 2,
            passes: None,
            cache_capacity: 8,
            threads: None,
            idle_spin: crate::cpu::threads::SPIN,
        }
    }
}

/// One thread per core (what `threads: None` means).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Counters of a model's calls and compiles since it was loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelStats {
    /// Calls of [`Model::run`] whose inputs fit the model's signature.
    pub calls: u64,
    /// Specializations compiled, by calls and by [`Model::specialize_for`].
    pub compiles: u64,
    /// Calls whose signature was already in the cache (compiled, or being compiled by another
    /// thread, which the call then waits for).
    pub cache_hits: u64,
    /// Specializations dropped to keep the cache within its capacity.
    pub evictions: u64,
    /// Whether the re-specialization warning has been given (it is given once per model).
    pub warned: bool,
    /// Total time spent compiling specializations.
    pub compile_time: Duration,
}

/// A graph the caller gives [`Model::specialization`] to compile from.
enum Given {
    /// To specialize and optimize (the model's graph, given up by [`Model::for_signature`]).
    Graph(Graph),
    /// Already specialized to the signature and optimized (an artifact's).
    Optimized(Graph),
    /// Already compiled for the CPU (an artifact's stored plan).
    Plan(Box<crate::cpu::CpuPlan>),
}

/// An artifact that cannot be loaded, for a caller that adds its path.
fn refuse(error: ArtifactError) -> RunError {
    RunError::Artifact { path: None, error }
}

/// `options` for a model loaded from an artifact described by `meta`, holding `stored`
/// specializations: refused when made for CPU features this machine lacks; new signatures
/// optimized with the artifact's own pipeline; a cache that keeps every stored one.
fn artifact_options(
    meta: &lathe_compiler::artifact::Meta,
    stored: usize,
    mut options: ModelOptions,
) -> Result<ModelOptions, RunError> {
    crate::cpu::check_features(&meta.cpu_features).map_err(refuse)?;
    options.passes = Some(meta.pipeline.clone());
    options.cache_capacity = options.cache_capacity.max(stored);
    Ok(options)
}

/// What a model specializes new signatures from.
enum Source {
    /// The graph as loaded.
    Graph(Graph),
    /// Nothing: the model was compiled for these signatures only ([`Model::for_signature`],
    /// an artifact without its generic graph) and keeps no graph for others.
    Only(Vec<Signature>),
    /// The model's source, imported again for each signature with the inputs it has values
    /// for bound ([`Model::from_import`]); `interface` holds the inputs only, to check calls
    /// against, and `needs` is the generic import's error, for callers without values.
    Import {
        import: Arc<dyn BoundImport>,
        interface: Graph,
        needs: ImportError,
    },
    /// A compiled artifact whose specializations were loaded from their stored plans:
    /// `interface` holds the inputs only, and the generic graph, when the file has one, is
    /// decoded from `file` the first time a signature needs it. Without one, the cache holds
    /// every signature it can run (its capacity is at least their number).
    Artifact {
        file: Arc<ArtifactFile>,
        interface: Graph,
        generic: std::sync::OnceLock<Result<Graph, String>>,
    },
}

/// A loaded model: an IR graph checked by the verifier, ready to run. `Send + Sync`: share it
/// behind an `Arc` and call [`Model::run`] from any number of threads.
pub struct Model {
    name: String,
    inputs: Vec<GraphInput>,
    /// The names of the outputs, in order.
    outputs: Vec<String>,
    /// What new signatures are specialized from.
    source: Source,
    options: ModelOptions,
    pipeline: Pipeline,
    input_names: Arc<[String]>,
    /// Which inputs are shape inputs, specialized by value (learnt by [`Model::run`]).
    shape_inputs: Mutex<Vec<bool>>,
    cache: SpecializationCache,
    /// The CPU backend's threads, shared by every specialization of the model.
    pool: Option<Arc<ThreadPool>>,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("graph", &self.name)
            .field("options", &self.options)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Loads `graph` for `backend` with the default options, verifying it first.
    pub fn new(graph: Graph, backend: Backend) -> Result<Model, RunError> {
        Model::with_options(
            graph,
            ModelOptions {
                backend,
                ..ModelOptions::default()
            },
        )
    }

    /// Loads `graph` with `options`, verifying it first.
    pub fn with_options(graph: Graph, options: ModelOptions) -> Result<Model, RunError> {
        lathe_ir::verify(&graph)?;
        let outputs = graph.outputs().iter().map(|o| o.name.clone()).collect();
        Model::assemble(Source::Graph(graph), outputs, options)
    }

    /// Loads the model `import` imports. When the importer needs the values of some inputs
    /// ([`ImportError::needs_values`]: a `Resize`'s scales fed as an input), the model keeps
    /// `import` instead of a graph: each call's signature then carries those inputs' values
    /// (as shape inputs' do), and each new signature imports the model again with them bound,
    /// as `tf.function` traces again for a new Python value. Inputs of more than
    /// [`MAX_SHAPE_INPUT`] values are no specialization key: a call giving one is refused,
    /// naming it. Tools that compile for types alone ([`Model::optimized_graph`]) get the
    /// import's error, which names the inputs whose values are needed.
    pub fn from_import(
        import: Arc<dyn BoundImport>,
        options: ModelOptions,
    ) -> Result<Model, RunError> {
        match import.import(&[]) {
            Ok(graph) => Model::with_options(graph, options),
            Err(needs) => Model::per_value(import, needs, options),
        }
    }

    /// [`Model::from_import`] for a caller that already has the generic import's error,
    /// `needs`; an error that needs no input values is returned as it is.
    pub fn per_value(
        import: Arc<dyn BoundImport>,
        needs: ImportError,
        options: ModelOptions,
    ) -> Result<Model, RunError> {
        let Some(wanted) = needs.needs_values.as_deref() else {
            return Err(RunError::Import(needs));
        };
        let (interface, outputs) = (wanted.interface(), wanted.outputs.clone());
        let marked: Vec<bool> = (interface.inputs().iter())
            .map(|i| wanted.inputs.contains(&i.name))
            .collect();
        let source = Source::Import {
            import,
            interface,
            needs,
        };
        let model = Model::assemble(source, outputs, options)?;
        *lock(&model.shape_inputs) = marked;
        Ok(model)
    }

    /// A model over `source` (whose graph, or interface, is verified) with `options` checked.
    fn assemble(
        source: Source,
        outputs: Vec<String>,
        options: ModelOptions,
    ) -> Result<Model, RunError> {
        let graph = match &source {
            Source::Graph(g)
            | Source::Import { interface: g, .. }
            | Source::Artifact { interface: g, .. } => g,
            Source::Only(_) => unreachable!("a model starts from a graph or a source"),
        };
        if options.cache_capacity == 0 {
            return Err(RunError::Options(
                "cache_capacity must be at least 1".to_string(),
            ));
        }
        if options.threads == Some(0) {
            return Err(RunError::Options(
                "threads must be at least 1 (or None for the default)".to_string(),
            ));
        }
        let mut pipeline = match &options.passes {
            Some(text) => Pipeline::parse(text)
                .map_err(|e| RunError::Options(format!("passes `{text}`: {e}")))?,
            None => Pipeline::for_level(options.opt_level)
                .map_err(|e| RunError::Options(format!("opt_level {}: {e}", options.opt_level)))?,
        };
        if options.backend == Backend::Cpu {
            // Fusion groups only what the CPU code generator compiles.
            pipeline.options.capabilities = Arc::new(crate::cpu::CpuCapabilities);
        }
        let input_names: Arc<[String]> = graph.inputs().iter().map(|i| i.name.clone()).collect();
        let cache = SpecializationCache::new(&graph.name, options.cache_capacity);
        let (name, inputs) = (graph.name.clone(), graph.inputs().to_vec());
        let pool = (options.backend == Backend::Cpu).then(|| {
            let threads = options.threads.unwrap_or_else(default_threads);
            Arc::new(ThreadPool::with_idle_spin(threads, options.idle_spin))
        });
        Ok(Model {
            name,
            inputs,
            outputs,
            source,
            options,
            pipeline,
            shape_inputs: Mutex::new(vec![false; input_names.len()]),
            input_names,
            cache,
            pool,
        })
    }

    /// Loads `graph` compiled for one input signature only (`inputs`, one type per graph
    /// input in order), keeping no copy of the graph as loaded: the graph is given up as soon
    /// as it is specialized, and the CPU plan then holds each weight once. What a one-shot run
    /// wants (`lathe run` and `lathe bench` load models this way). Calls with inputs of other
    /// types are an error naming the signature it was compiled for.
    pub fn for_signature(
        graph: Graph,
        options: ModelOptions,
        inputs: &[TensorType],
    ) -> Result<Model, RunError> {
        let mut model = Model::with_options(graph, options)?;
        let signature = Signature::new(model.input_names.clone(), inputs.to_vec());
        let only = Source::Only(vec![signature.clone()]);
        let graph = match std::mem::replace(&mut model.source, only) {
            Source::Graph(g) => Some(g),
            Source::Only(_) | Source::Import { .. } | Source::Artifact { .. } => None,
        };
        model.specialization(signature, Caller::AheadOfTime, graph.map(Given::Graph))?;
        Ok(model)
    }

    /// Loads the compiled artifact at `path` (`lathe compile`'s `.lathe`).
    ///
    /// The file is mapped into memory, not read. On the CPU backend, when it holds a compiled
    /// plan for every specialization, those plans are loaded as they are: their packed
    /// weights are used where they lie in the mapping, no graph is decoded, and the generic
    /// graph (if any) is decoded only when a call first needs it. Otherwise (the interpreter
    /// backend, or a plan the artifact could not store) the graphs are decoded and compiled
    /// as [`Model::from_artifact`] does.
    pub fn load(path: &std::path::Path, options: ModelOptions) -> Result<Model, RunError> {
        let file = crate::artifact::open(path)?;
        Model::from_artifact_file(Arc::new(file), options).map_err(|e| match e {
            RunError::Artifact { path: None, error } => RunError::Artifact {
                path: Some(path.to_path_buf()),
                error,
            },
            e => e,
        })
    }

    /// Opens the model at `path`, whatever it holds: a compiled artifact ([`Model::load`]), or
    /// a saved graph (a SavedModel directory, a GraphDef `.pb`, an ONNX model, IR text)
    /// imported with the default load options ([`Model::from_import`]). What a server or an
    /// embedding program loads when it is given a path. Every error names the path once.
    pub fn open(path: &std::path::Path, options: ModelOptions) -> Result<Model, RunError> {
        if lathe_compiler::artifact::is_artifact_file(path) {
            return Model::load(path, options);
        }
        let file = lathe_compiler::ModelFile::new(path);
        Model::from_import(Arc::new(file), options).map_err(|e| match e {
            // The importer's errors name the file already.
            RunError::Import(_) => e,
            e => RunError::Open {
                path: path.to_path_buf(),
                error: Box::new(e),
            },
        })
    }

    /// [`Model::load`] for an artifact already opened ([`crate::artifact::open`]).
    pub fn from_artifact_file(
        file: Arc<ArtifactFile>,
        options: ModelOptions,
    ) -> Result<Model, RunError> {
        let n = file.meta.specializations.len();
        let planned = n > 0 && (0..n).all(|i| file.has_plan(i));
        if options.backend == Backend::Cpu && planned {
            return Model::from_plans(file, options);
        }
        let artifact = file.decode().map_err(refuse)?;
        Model::from_artifact(artifact, options)
    }

    /// Loads an artifact's specializations from their stored plans (see [`Model::load`]).
    fn from_plans(file: Arc<ArtifactFile>, options: ModelOptions) -> Result<Model, RunError> {
        let n = file.meta.specializations.len();
        let options = artifact_options(&file.meta, n, options)?;
        let interface = file.interface().map_err(refuse)?;
        lathe_ir::verify(&interface)?;
        let source = Source::Artifact {
            file: Arc::clone(&file),
            interface,
            generic: std::sync::OnceLock::new(),
        };
        let model = Model::assemble(source, file.meta.outputs.clone(), options)?;
        let pool = model
            .pool
            .clone()
            .expect("the CPU backend has a thread pool");
        for i in 0..n {
            let start = std::time::Instant::now();
            let (plan, blob) = (file.plan(i).map_err(refuse)?)
                .ok_or_else(|| refuse(ArtifactError::Corrupt(format!("plan {i} is missing"))))?;
            let plan =
                crate::cpu::CpuPlan::from_image(plan, Arc::clone(file.bytes()), blob, pool.clone())
                    .map_err(|e| refuse(ArtifactError::Corrupt(format!("plan {i}: {e}"))))?;
            let signature = Signature::new(model.input_names.clone(), plan.input_types());
            tracing::info!(
                %signature,
                load_ms = start.elapsed().as_secs_f64() * 1e3,
                "loaded a stored plan"
            );
            model.specialization(
                signature,
                Caller::AheadOfTime,
                Some(Given::Plan(Box::new(plan))),
            )?;
        }
        Ok(model)
    }

    /// Loads a compiled artifact: each specialization it holds is compiled for the backend
    /// now, with no import and no passes (it was optimized when compiled), and the generic
    /// graph, when it holds one, serves other signatures, optimized with the artifact's
    /// pipeline (which replaces `options.opt_level` and `options.passes`). Without a generic
    /// graph, other signatures are refused, naming those it has. An artifact whose contents
    /// need CPU features this machine lacks is refused.
    pub fn from_artifact(artifact: Artifact, options: ModelOptions) -> Result<Model, RunError> {
        let Artifact {
            meta,
            generic,
            specializations,
            ..
        } = artifact;
        let options = artifact_options(&meta, specializations.len(), options)?;
        let signature_of = |g: &Graph| {
            let names: Arc<[String]> = g.inputs().iter().map(|i| i.name.clone()).collect();
            Signature::new(names, g.inputs().iter().map(|i| i.ty.clone()).collect())
        };
        let model = match (generic, specializations.first()) {
            (Some(g), _) => Model::with_options(g, options)?,
            (None, Some(first)) => {
                let mut model = Model::with_options(first.clone(), options)?;
                model.source = Source::Only(specializations.iter().map(signature_of).collect());
                model
            }
            (None, None) => {
                return Err(refuse(ArtifactError::Corrupt(
                    "it holds neither a generic graph nor a specialization".to_string(),
                )))
            }
        };
        for g in specializations {
            let names: Vec<&str> = g.inputs().iter().map(|i| i.name.as_str()).collect();
            if names.iter().ne(model.input_names.iter()) {
                return Err(refuse(ArtifactError::Corrupt(format!(
                    "a specialization takes inputs ({}) other than the model's ({})",
                    names.join(", "),
                    model.input_names.join(", ")
                ))));
            }
            let signature = signature_of(&g);
            model.specialization(signature, Caller::AheadOfTime, Some(Given::Optimized(g)))?;
        }
        Ok(model)
    }

    /// The model's graph, as loaded (not specialized); `None` for a model compiled for one
    /// signature only ([`Model::for_signature`]) and one imported per value
    /// ([`Model::from_import`]).
    pub fn graph(&self) -> Option<&Graph> {
        match &self.source {
            Source::Graph(g) => Some(g),
            Source::Artifact { .. } => self.artifact_generic(None).ok(),
            Source::Only(_) | Source::Import { .. } => None,
        }
    }

    /// The generic graph of a model loaded from an artifact's plans, decoded on first use; for
    /// an artifact without one, the error for `signature` naming those it was compiled for.
    fn artifact_generic(&self, signature: Option<&Signature>) -> Result<&Graph, RunError> {
        let Source::Artifact { file, generic, .. } = &self.source else {
            unreachable!("called for artifact sources only")
        };
        if !file.has_generic() {
            return Err(self.not_compiled_for(signature, &self.cache.signatures()));
        }
        let decoded = generic.get_or_init(|| {
            let start = std::time::Instant::now();
            let g = file.generic().map_err(|e| e.to_string());
            tracing::info!(
                decode_ms = start.elapsed().as_secs_f64() * 1e3,
                "decoded the artifact's generic graph"
            );
            g.and_then(|g| g.ok_or_else(|| "it has no generic graph".to_string()))
        });
        decoded.as_ref().map_err(|m| RunError::Artifact {
            path: None,
            error: ArtifactError::Corrupt(m.clone()),
        })
    }

    /// The error for a signature a model has no graph to compile for.
    fn not_compiled_for(&self, signature: Option<&Signature>, compiled: &[Signature]) -> RunError {
        RunError::NotCompiledFor {
            model: self.name.clone(),
            signature: signature
                .map_or_else(|| "other signatures".to_string(), ToString::to_string),
            compiled: (compiled.iter().map(ToString::to_string))
                .collect::<Vec<_>>()
                .join(" and "),
        }
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The backend this model runs on.
    pub fn backend(&self) -> Backend {
        self.options.backend
    }

    /// The options the model was loaded with.
    pub fn options(&self) -> &ModelOptions {
        &self.options
    }

    /// The inputs the model takes, in order.
    pub fn inputs(&self) -> &[GraphInput] {
        &self.inputs
    }

    /// The names of the outputs the model produces, in order (for a model imported per
    /// value, those of the generic import; a call returns the outputs of its own import,
    /// which differ where a value decides how many there are).
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// Runs the model on named inputs; returns `(output name, tensor)` in output order.
    ///
    /// The call runs on the specialization for its inputs' dtypes and shapes, compiled now if
    /// the cache does not hold it.
    ///
    /// When the graph's shapes depend on the value of an integer input of at most one axis
    /// (a reshape target fed at run time), specializing by types fails; the model then takes
    /// every such input as a *shape input* from this call on, and specializes by its value
    /// too (see [`Signature`]). A model imported per value ([`Model::from_import`]) takes the
    /// inputs its importer needs as shape inputs from the start, and learns more the same way
    /// when an import with some bound asks for others.
    pub fn run(&self, inputs: &[(&str, Tensor)]) -> Result<Vec<(String, Tensor)>, RunError> {
        let ordered = self.order_inputs(inputs)?;
        let spec = loop {
            let shape_inputs = lock(&self.shape_inputs).clone();
            self.check_value_keys(&ordered, &shape_inputs)?;
            let signature = Signature::of(self.input_names.clone(), &ordered, &shape_inputs);
            match self.specialization(signature, Caller::Run, None) {
                Err(RunError::Specialize(SpecializeError::UnknownShape { .. }))
                    if self.learn_shape_inputs(&ordered) => {}
                Err(RunError::Import(e)) if self.learn_needed_inputs(&e) => {}
                r => break r?,
            }
        };
        let outs = spec.run(&ordered)?;
        Ok(spec.output_names().iter().cloned().zip(outs).collect())
    }

    /// Compiles (or finds in the cache) the specialization for concrete input types, one per
    /// input in order, ahead of the calls that will use it. Not counted as a call, and not
    /// counted toward the re-specialization warning.
    pub fn specialize_for(&self, inputs: &[TensorType]) -> Result<Arc<Specialization>, RunError> {
        let signature = Signature::new(self.input_names.clone(), inputs.to_vec());
        self.specialization(signature, Caller::AheadOfTime, None)
    }

    /// The graph a call with inputs of these types runs: the model's graph specialized to them
    /// and optimized by the model's pipeline, with `hooks` called around every pass (for
    /// `lathe dump`). Neither cached nor compiled for the backend.
    pub fn optimized_graph(
        &self,
        inputs: &[TensorType],
        hooks: &mut dyn PassHooks,
    ) -> Result<(SpecializedGraph, Vec<PassRecord>), RunError> {
        let signature = Signature::new(self.input_names.clone(), inputs.to_vec());
        let graph = self.generic(&signature)?;
        crate::specialization::optimize_for(Cow::Borrowed(graph), &signature, &self.pipeline, hooks)
    }

    /// Compiles the specialization for inputs of these types as a call would, calling `hooks`
    /// around every pass, without caching it: for tools that watch the optimizer (`lathe dump`,
    /// `lathe inspect`) and want the plan it leads to from the same single compile.
    pub fn compile_uncached(
        &self,
        inputs: &[TensorType],
        hooks: &mut dyn PassHooks,
    ) -> Result<Specialization, RunError> {
        let signature = Signature::new(self.input_names.clone(), inputs.to_vec());
        let graph = self.generic(&signature)?;
        check_signature(graph, inputs)?;
        Specialization::compile(
            Cow::Borrowed(graph),
            signature,
            &self.pipeline,
            hooks,
            self.options.backend,
            self.pool.as_ref(),
            self.cache.weights(),
            Keep::Graph,
        )
    }

    /// How many specializations the cache holds now.
    pub fn specializations(&self) -> usize {
        self.cache.len()
    }

    /// The signatures the cache holds, most recently used first.
    pub fn cached_signatures(&self) -> Vec<Signature> {
        self.cache.signatures()
    }

    /// A snapshot of the model's counters.
    pub fn stats(&self) -> ModelStats {
        self.cache.stats()
    }

    /// The graph to specialize for `signature`: the model's, or an error for a model compiled
    /// for one signature only, or imported per value (the import's error, naming the inputs
    /// whose values it needs).
    fn generic(&self, signature: &Signature) -> Result<&Graph, RunError> {
        match &self.source {
            Source::Graph(g) => Ok(g),
            Source::Only(compiled) => Err(self.not_compiled_for(Some(signature), compiled)),
            Source::Artifact { .. } => self.artifact_generic(Some(signature)),
            Source::Import { needs, .. } => Err(RunError::Import(needs.clone())),
        }
    }

    /// The graph `signature`'s inputs are checked against: the model's, or its interface.
    fn declared(&self, signature: &Signature) -> Result<&Graph, RunError> {
        match &self.source {
            Source::Import { interface, .. } | Source::Artifact { interface, .. } => Ok(interface),
            _ => self.generic(signature),
        }
    }

    /// The graph to compile for `signature`: the model's, or its source imported with every
    /// input the signature has a value for bound to that value.
    fn graph_for(&self, signature: &Signature) -> Result<Cow<'_, Graph>, RunError> {
        let Source::Import { import, .. } = &self.source else {
            return self.generic(signature).map(Cow::Borrowed);
        };
        let bound: Vec<(String, Tensor)> = (signature.names().iter())
            .zip(signature.values())
            .filter_map(|(n, v)| Some((n.clone(), Tensor::clone(v.as_ref()?))))
            .collect();
        let graph = import.import(&bound).map_err(RunError::Import)?;
        Ok(Cow::Owned(graph))
    }

    /// The specialization for `signature`, from the cache or compiled now (from `owned` when
    /// given, which is then let go of, else from the model's graph). Threads missing on the
    /// same signature at once compile it once: the first fills the slot, the others wait on
    /// it.
    fn specialization(
        &self,
        signature: Signature,
        caller: Caller,
        owned: Option<Given>,
    ) -> Result<Arc<Specialization>, RunError> {
        let Lookup { slot, warning } = self.cache.lookup(&signature, caller, || {
            let graph = match &owned {
                Some(Given::Graph(g) | Given::Optimized(g)) => g,
                Some(Given::Plan(_)) | None => self.declared(&signature)?,
            };
            Ok(check_signature(graph, signature.types())?)
        })?;
        if let Some(message) = warning {
            tracing::warn!(model = %self.name, "{message}");
        }
        let mut filled = lock(&slot);
        if let Some(spec) = filled.as_ref() {
            return Ok(spec.clone());
        }
        let optimize = |graph: Cow<'_, Graph>| {
            Specialization::compile(
                graph,
                signature.clone(),
                &self.pipeline,
                &mut NoHooks,
                self.options.backend,
                self.pool.as_ref(),
                self.cache.weights(),
                Keep::PlanOnly,
            )
        };
        let compiled = match owned {
            Some(Given::Plan(plan)) => Ok(Specialization::from_plan(
                *plan,
                signature.clone(),
                self.outputs.clone(),
            )),
            Some(Given::Optimized(g)) => Specialization::from_optimized(
                g,
                signature.clone(),
                self.options.backend,
                self.pool.as_ref(),
                self.cache.weights(),
            ),
            Some(Given::Graph(g)) => optimize(Cow::Owned(g)),
            None => self.graph_for(&signature).and_then(optimize),
        };
        match compiled {
            Ok(spec) => {
                let spec = Arc::new(spec);
                *filled = Some(spec.clone());
                drop(filled);
                self.cache.compiled(spec.compile_time());
                Ok(spec)
            }
            Err(e) => {
                drop(filled);
                self.cache.forget(&signature, &slot);
                Err(e)
            }
        }
    }

    /// Marks the inputs of this call that can be shape inputs (integers of at most one axis
    /// and [`MAX_SHAPE_INPUT`] elements, and numeric scalars, such as a range's bounds); false
    /// when no input not marked yet can be.
    fn learn_shape_inputs(&self, inputs: &[Tensor]) -> bool {
        let mut marked = lock(&self.shape_inputs);
        let mut learnt = false;
        for (k, t) in inputs.iter().enumerate() {
            let index = matches!(t.dtype(), DType::I32 | DType::I64)
                && t.shape().len() <= 1
                && t.len() <= MAX_SHAPE_INPUT;
            let fits = index || (t.shape().is_empty() && t.dtype().is_numeric());
            if fits && !marked[k] {
                marked[k] = true;
                learnt = true;
            }
        }
        if learnt {
            tracing::info!(model = %self.name, "specializing by the values of shape inputs");
        }
        learnt
    }

    /// Marks the inputs an import asked the values of (`e`'s [`ImportError::needs_values`])
    /// as shape inputs; false when it asked for none not marked yet (binding them did not
    /// help, so the error stands).
    fn learn_needed_inputs(&self, e: &ImportError) -> bool {
        let Some(needs) = &e.needs_values else {
            return false;
        };
        let mut marked = lock(&self.shape_inputs);
        let mut learnt = false;
        for (k, name) in self.input_names.iter().enumerate() {
            if needs.inputs.contains(name) && !marked[k] {
                marked[k] = true;
                learnt = true;
            }
        }
        learnt
    }

    /// Refuses a call whose shape inputs (`marked`) are too large to key a specialization.
    fn check_value_keys(&self, inputs: &[Tensor], marked: &[bool]) -> Result<(), RunError> {
        for ((t, &m), name) in inputs.iter().zip(marked).zip(self.input_names.iter()) {
            if m && t.len() > MAX_SHAPE_INPUT {
                return Err(RunError::ValueKey {
                    name: name.clone(),
                    len: t.len(),
                    max: MAX_SHAPE_INPUT,
                });
            }
        }
        Ok(())
    }

    /// Puts named inputs in signature order, rejecting unknown, duplicate and missing names.
    fn order_inputs(&self, inputs: &[(&str, Tensor)]) -> Result<Vec<Tensor>, RunError> {
        let decl = self.inputs();
        let mut slots: Vec<Option<Tensor>> = vec![None; decl.len()];
        for (name, t) in inputs {
            let i = decl.iter().position(|d| d.name == *name).ok_or_else(|| {
                RunError::UnknownInput {
                    name: name.to_string(),
                    known: decl
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?;
            if slots[i].replace(t.clone()).is_some() {
                return Err(RunError::DuplicateInput {
                    name: name.to_string(),
                });
            }
        }
        slots
            .into_iter()
            .zip(decl)
            .map(|(t, d)| {
                t.ok_or_else(|| RunError::MissingInput {
                    name: d.name.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lathe_ir::ops::BinaryOp;
    use lathe_ir::{DType, Dim, Op, Shape};
    use std::sync::Barrier;

    fn identity_model() -> Model {
        let mut g = Graph::new("id");
        let x = g.add_input("x", TensorType::known(DType::F32, &[2]));
        let y = g.add(Op::Identity, vec![x], "y").unwrap();
        g.add_output("y:0", y).unwrap();
        Model::new(g, Backend::Interp).unwrap()
    }

    /// `y = x + x` for `x: f32[?n]`.
    fn doubling(options: ModelOptions) -> Model {
        let mut g = Graph::new("double");
        let x = g.add_input("x", TensorType::new(DType::F32, Shape(vec![Dim::sym("n")])));
        let y = g.add(Op::Binary(BinaryOp::Add), vec![x, x], "y").unwrap();
        g.add_output("y", y).unwrap();
        Model::with_options(g, options).unwrap()
    }

    fn ones(n: usize) -> Tensor {
        Tensor::from_vec(&[n], vec![1.0f32; n])
    }

    fn run(m: &Model, n: usize) -> Tensor {
        let out = m.run(&[("x", ones(n))]).unwrap();
        assert_eq!(out[0].1, Tensor::from_vec(&[n], vec![2.0f32; n]));
        out.into_iter().next().unwrap().1
    }

    fn cached_sizes(m: &Model) -> Vec<usize> {
        m.cached_signatures()
            .iter()
            .map(|s| s.types()[0].shape.as_known().unwrap()[0])
            .collect()
    }

    #[test]
    fn runs_by_name_and_rejects_bad_names() {
        let m = identity_model();
        let t = Tensor::from_vec(&[2], vec![1.0f32, 2.0]);
        let out = m.run(&[("x", t.clone())]).unwrap();
        assert_eq!(out, vec![("y:0".to_string(), t.clone())]);
        let e = m.run(&[("z", t.clone())]).unwrap_err().to_string();
        assert_eq!(e, "model has no input named `z` (its inputs: x)");
        let e = m.run(&[]).unwrap_err().to_string();
        assert_eq!(e, "missing input `x`");
        let e = m
            .run(&[("x", t.clone()), ("x", t)])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "input `x` given more than once");
    }

    #[test]
    fn model_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Model>();
        check::<Arc<Specialization>>();
    }

    #[test]
    fn counts_hits_and_misses() {
        let m = doubling(ModelOptions::default());
        for n in [2, 2, 3, 2, 3, 4] {
            run(&m, n);
        }
        let s = m.stats();
        assert_eq!(
            (s.calls, s.compiles, s.cache_hits, s.evictions, s.warned),
            (6, 3, 3, 0, false)
        );
        assert_eq!(m.specializations(), 3);
        assert_eq!(cached_sizes(&m), [4, 3, 2]);
    }

    #[test]
    fn evicts_the_least_recently_used() {
        let m = doubling(ModelOptions {
            cache_capacity: 2,
            ..ModelOptions::default()
        });
        run(&m, 1);
        run(&m, 2);
        run(&m, 1); // 1 is now more recent than 2
        run(&m, 3); // evicts 2
        assert_eq!(cached_sizes(&m), [3, 1]);
        run(&m, 1); // hit
        run(&m, 2); // miss: evicts 3
        assert_eq!(cached_sizes(&m), [2, 1]);
        let s = m.stats();
        assert_eq!(
            (s.calls, s.compiles, s.cache_hits, s.evictions),
            (6, 4, 2, 2)
        );
        assert_eq!(m.specializations(), 2);
    }

    #[test]
    fn warns_once_when_shapes_keep_changing() {
        let m = doubling(ModelOptions::default());
        for n in 1..=4 {
            run(&m, n);
        }
        assert!(
            !m.stats().warned,
            "4 new signatures in 4 calls is not yet 5"
        );
        run(&m, 5);
        assert!(m.stats().warned);
        for n in 6..=40 {
            run(&m, n);
        }
        let s = m.stats();
        assert!(s.warned);
        assert_eq!((s.compiles, s.evictions), (40, 32));
        assert_eq!(m.specializations(), 8);
    }

    #[test]
    fn ahead_of_time_compiles_are_not_calls() {
        let m = doubling(ModelOptions::default());
        for n in 1..=6 {
            let spec = m
                .specialize_for(&[TensorType::known(DType::F32, &[n])])
                .unwrap();
            assert_eq!(spec.signature().to_string(), format!("(x: f32[{n}])"));
            assert_eq!(
                spec.signature().types(),
                [TensorType::known(DType::F32, &[n])]
            );
            assert!(
                spec.graph().is_none(),
                "a cached cpu specialization keeps no graph"
            );
        }
        for n in (1..=6).cycle().take(30) {
            run(&m, n);
        }
        let s = m.stats();
        assert_eq!(
            (s.calls, s.compiles, s.cache_hits, s.warned),
            (30, 6, 30, false)
        );
        // The same specialization is shared, not rebuilt.
        let a = m
            .specialize_for(&[TensorType::known(DType::F32, &[3])])
            .unwrap();
        let b = m
            .specialize_for(&[TensorType::known(DType::F32, &[3])])
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn rejected_inputs_name_the_input_and_leave_the_cache_alone() {
        let m = doubling(ModelOptions::default());
        let e = m
            .run(&[("x", Tensor::from_vec(&[2], vec![1i32, 2]))])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "input `x`: expected f32[?n], got i32[2]: dtype i32, not f32"
        );
        let e = m
            .run(&[("x", Tensor::from_vec(&[1, 2], vec![1.0f32, 2.0]))])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "input `x`: expected f32[?n], got f32[1,2]: rank 2, not 1"
        );
        let e = m
            .specialize_for(&[TensorType::new(DType::F32, Shape(vec![Dim::Unknown]))])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "input `x`: got f32[?], which is not a concrete type: every dimension must be a \
             known size"
        );
        let e = m.specialize_for(&[]).unwrap_err().to_string();
        assert_eq!(e, "graph `double` takes 1 input(s) (x), got 0");
        assert_eq!(m.specializations(), 0);
        assert_eq!(m.stats(), ModelStats::default());
    }

    #[test]
    fn options_are_checked_and_kept() {
        let g = || identity_model().graph().unwrap().clone();
        let bad = |o: ModelOptions| Model::with_options(g(), o).unwrap_err().to_string();
        assert_eq!(
            bad(ModelOptions {
                cache_capacity: 0,
                ..ModelOptions::default()
            }),
            "invalid model options: cache_capacity must be at least 1"
        );
        assert_eq!(
            bad(ModelOptions {
                threads: Some(0),
                ..ModelOptions::default()
            }),
            "invalid model options: threads must be at least 1 (or None for the default)"
        );
        let o = ModelOptions {
            opt_level: 0,
            threads: Some(3),
            ..ModelOptions::default()
        };
        let m = Model::with_options(g(), o.clone()).unwrap();
        assert_eq!(m.options(), &o);
        assert_eq!(
            Model::new(g(), Backend::Interp)
                .unwrap()
                .options()
                .opt_level,
            2
        );
    }

    #[test]
    fn threads_missing_together_compile_once() {
        let m = Arc::new(doubling(ModelOptions::default()));
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (m, barrier) = (m.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    run(&m, 7);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = m.stats();
        assert_eq!((s.calls, s.compiles, s.cache_hits), (8, 1, 7));
    }
}
