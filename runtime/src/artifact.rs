//! Compiled artifacts from the runtime's side: compiling a model into one (the specializations'
//! optimized graphs and, for the CPU backend, their compiled plans), and mapping one into
//! memory to load. The format is `lathe_compiler::artifact`'s; loading is [`Model::load`].

use crate::cpu::image::Bytes;
use crate::{Backend, Model, RunError};
use lathe_compiler::artifact::{interface_of, Artifact, ArtifactFile, Meta, StoredPlan};
use lathe_compiler::pipeline::NoHooks;
use lathe_ir::TensorType;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

/// What [`compile`] made, and what it could not store.
#[derive(Debug)]
pub struct Compiled {
    pub artifact: Artifact,
    /// Per specialization without a stored plan, why (it is compiled when the artifact loads).
    pub unstored: Vec<String>,
}

/// Compiles `model` for each of `signatures` (one type per input, in order) into an artifact:
/// each specialization's optimized graph and, on the CPU backend, its plan with the weights
/// packed; the generic graph too when `generic`. `source` and `pipeline` are recorded in its
/// metadata (the file compiled, and the pass pipeline as `--passes` text). `progress` is told
/// each signature as its compile starts.
pub fn compile(
    model: &Model,
    signatures: &[Vec<TensorType>],
    generic: bool,
    source: &str,
    pipeline: &str,
    mut progress: impl FnMut(&str),
) -> Result<Compiled, RunError> {
    let mut specializations = Vec::with_capacity(signatures.len());
    let mut plans = Vec::with_capacity(signatures.len());
    let mut described = Vec::with_capacity(signatures.len());
    let mut unstored = Vec::new();
    let mut features = BTreeSet::new();
    for types in signatures {
        let spec = match model.compile_uncached(types, &mut NoHooks) {
            Ok(spec) => spec,
            // The backend cannot compile it: the optimized graph alone is stored, and loading
            // it will say why.
            Err(e @ RunError::Compile { .. }) => {
                let (g, _) = model.optimized_graph(types, &mut NoHooks)?;
                let graph = g.into_graph();
                let names = graph.inputs().iter().map(|i| i.name.clone()).collect();
                let signature = crate::Signature::new(names, types.clone()).to_string();
                progress(&signature);
                unstored.push(format!("{signature}: {e}"));
                specializations.push(graph);
                plans.push(None);
                described.push(signature);
                continue;
            }
            Err(e) => return Err(e),
        };
        let signature = spec.signature().to_string();
        progress(&signature);
        let graph = spec
            .graph()
            .expect("compile_uncached keeps the graph")
            .clone();
        let plan = match (model.backend(), spec.cpu_plan()) {
            (Backend::Cpu, Some(plan)) => match plan.to_image() {
                Ok(image) => {
                    features.extend(image.features);
                    Some(StoredPlan {
                        plan: image.plan,
                        blob: image.blob,
                    })
                }
                // A kernel images do not hold yet (or a plan that does not encode): the
                // graph alone is stored, with a note.
                Err(e) => {
                    unstored.push(format!("{signature}: {e}"));
                    None
                }
            },
            _ => None,
        };
        specializations.push(graph);
        plans.push(plan);
        described.push(signature);
    }
    let artifact = Artifact {
        // The model's inputs as declared, whatever shapes its specializations fix.
        interface: interface_of(model.name(), model.inputs()),
        meta: Meta {
            producer: format!("lathe {}", env!("CARGO_PKG_VERSION")),
            model: model.name().to_string(),
            source: source.to_string(),
            pipeline: pipeline.to_string(),
            backend: model.backend().name().to_string(),
            cpu_features: features.into_iter().collect(),
            specializations: described,
            outputs: model.outputs().to_vec(),
        },
        generic: generic.then(|| model.graph().cloned()).flatten(),
        specializations,
        plans,
    };
    Ok(Compiled { artifact, unstored })
}

/// Opens the artifact at `path`: mapped ([`map`]) and checked (format, length, checksum,
/// sections, metadata), nothing decoded yet.
pub fn open(path: &Path) -> Result<ArtifactFile, RunError> {
    let at = |error| RunError::Artifact {
        path: Some(path.to_path_buf()),
        error,
    };
    let start = std::time::Instant::now();
    let bytes = map(path).map_err(|e| at(e.into()))?;
    let file = ArtifactFile::parse(bytes).map_err(at)?;
    tracing::info!(
        path = %path.display(),
        open_ms = start.elapsed().as_secs_f64() * 1e3,
        "opened artifact"
    );
    Ok(file)
}

/// The file at `path`, mapped into memory (read into aligned memory where it cannot be).
pub fn map(path: &Path) -> std::io::Result<Bytes> {
    let file = std::fs::File::open(path)?;
    // SAFETY: the mapping is read-only and private. A file changed by another process while
    // mapped would change what is read (as it would for a shared library); artifacts are
    // written to a temporary file and renamed into place, never rewritten where they are.
    match unsafe { memmap2::MmapOptions::new().map(&file) } {
        Ok(map) => Ok(Arc::new(map)),
        Err(e) => {
            tracing::debug!(error = %e, "mapping failed; reading the file");
            let bytes = std::fs::read(path)?;
            Ok(Arc::new(crate::cpu::image::AlignedBytes::copy_of(&bytes)))
        }
    }
}
