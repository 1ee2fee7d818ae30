//! Compiled artifacts (`.lathe` files): what `lathe compile` writes and every command and
//! [`Model::load`](../../lathe_runtime/struct.Model.html) read back without the importers and
//! without optimizing again.
//!
//! An artifact holds a model's optimized specializations (one graph per input signature,
//! every shape known, already through the pass pipeline) and, unless left out, the model's
//! generic graph, specialized and optimized at run time for signatures it has no
//! specialization for. Graphs are stored as IR text whose constants above
//! [`WEIGHTS_ABOVE_BYTES`] are `dense<extern N>` references into one weights section (each
//! tensor once, however many graphs use it, 64-byte aligned): see [`lathe_ir::text`].
//!
//! The container ([`container`]) is versioned and checksummed; reading refuses another format
//! version, a truncated or damaged file, and a model whose contents need CPU features this
//! machine lacks (the caller checks [`Meta::cpu_features`]), each with an error that says so.

pub mod container;

pub use container::{is_artifact, is_artifact_file};

use container::{Sections, Writer, ALIGN};
use lathe_ir::text::{parse_with_constants, print_external, ConstTable};
use lathe_ir::{DType, Graph, Tensor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// The artifact format this build writes and reads. Bump it on any change to what the
/// sections hold or how they are laid out.
pub const FORMAT_VERSION: u32 = 4;

/// Constants of more bytes than this go to the weights section; smaller ones stay in the
/// graph text (shapes, axes, scalars), where dumps show them.
pub const WEIGHTS_ABOVE_BYTES: usize = 64;

/// What an artifact says about itself (its `meta` section, JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// What wrote it: `lathe` and its version.
    pub producer: String,
    /// The model's name (its graph's).
    pub model: String,
    /// The file it was compiled from, as given to `lathe compile`.
    pub source: String,
    /// The pass pipeline its specializations went through, as text (`--passes` syntax); new
    /// signatures are optimized with it too.
    pub pipeline: String,
    /// The backend the specializations were optimized for (fusion groups what it compiles).
    pub backend: String,
    /// CPU features its contents need (none while it holds IR only).
    pub cpu_features: Vec<String>,
    /// Each specialization's input signature, as text, in section order.
    pub specializations: Vec<String>,
    /// The model's output names, in order (its inputs are the `interface` section's graph).
    pub outputs: Vec<String>,
}

/// A specialization compiled for the backend: its plan and the plan's arrays (packed
/// weights), as the backend encoded them (`lathe_runtime::cpu::image`). Stored in sections
/// `plan/N` and `plan/N.blob`; the blob starts 64-byte aligned in the file, so a reader that
/// maps the file uses the packed weights where they lie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPlan {
    pub plan: Vec<u8>,
    pub blob: Vec<u8>,
}

/// Where one weight lies in the weights section (the `weights.index` section is a JSON list
/// of these, entry `N` being `dense<extern N>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct WeightEntry {
    dtype: String,
    dims: Vec<usize>,
    offset: u64,
    bytes: u64,
}

/// A compiled model, as stored. Cloning shares the weights.
#[derive(Clone, Debug)]
pub struct Artifact {
    pub meta: Meta,
    /// The model's inputs as it declares them (a graph of inputs only): what calls are
    /// checked against, whether or not the generic graph is kept (see [`interface_of`]).
    pub interface: Graph,
    /// The model's graph as imported, for signatures without a specialization; `None` when
    /// compiled without it (then other signatures are refused).
    pub generic: Option<Graph>,
    /// Optimized graphs, every shape known, one per signature (their inputs' types).
    pub specializations: Vec<Graph>,
    /// Per specialization, its compiled plan when the backend could encode it (the same
    /// length as `specializations`, or empty). [`Artifact::from_bytes`] leaves them out
    /// (empty): [`ArtifactFile`] reads them where they lie.
    pub plans: Vec<Option<StoredPlan>>,
}

/// Why an artifact cannot be read.
#[derive(Debug, Error)]
pub enum ArtifactError {
    /// Another format version: compiled by another Lathe.
    #[error(
        "it was written in artifact format version {found}, and this lathe reads version \
         {expected}: compile the model again with this lathe"
    )]
    Version { found: u32, expected: u32 },
    /// Damaged, truncated, or not an artifact.
    #[error("it is damaged or not a Lathe artifact: {0}")]
    Corrupt(String),
    /// Its contents need CPU features this machine lacks.
    #[error(
        "it was compiled for CPU features this machine lacks ({missing}); compile it on (or \
         for) this machine"
    )]
    CpuFeatures { missing: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// An artifact that could not be read, with its path.
#[derive(Debug, Error)]
#[error("`{}`: {source}", path.display())]
pub struct ReadError {
    pub path: PathBuf,
    #[source]
    pub source: ArtifactError,
}

impl Artifact {
    /// The graph whose inputs a call gives: the generic graph, or without it the first
    /// specialization (reading refuses an artifact with neither).
    pub fn declared(&self) -> &Graph {
        (self.generic.as_ref().or(self.specializations.first())).expect("an artifact holds a graph")
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut table = ConstTable::new(WEIGHTS_ABOVE_BYTES);
        let generic = self.generic.as_ref().map(|g| print_external(g, &mut table));
        let specs: Vec<String> = (self.specializations.iter())
            .map(|g| print_external(g, &mut table))
            .collect();
        let mut blob = Vec::new();
        let mut index = Vec::with_capacity(table.tensors().len());
        for t in table.tensors() {
            blob.resize(blob.len().div_ceil(ALIGN) * ALIGN, 0);
            let bytes = t.to_le_bytes();
            index.push(WeightEntry {
                dtype: t.dtype().name().to_string(),
                dims: t.shape().to_vec(),
                offset: blob.len() as u64,
                bytes: bytes.len() as u64,
            });
            blob.extend_from_slice(&bytes);
        }
        let mut w = Writer::default();
        w.section("meta", json(&self.meta));
        w.section(
            "interface",
            lathe_ir::text::print(&self.interface).into_bytes(),
        );
        w.section("weights.index", json(&index));
        w.section("weights", blob);
        if let Some(text) = generic {
            w.section("generic", text.into_bytes());
        }
        for (i, text) in specs.into_iter().enumerate() {
            w.section(format!("spec/{i}"), text.into_bytes());
        }
        for (i, plan) in self.plans.iter().enumerate() {
            if let Some(p) = plan {
                w.section(format!("plan/{i}"), p.plan.clone());
                w.section(format!("plan/{i}.blob"), p.blob.clone());
            }
        }
        w.finish(FORMAT_VERSION)
    }

    /// Writes the artifact to `path` (through a temporary file beside it, renamed into place,
    /// so a reader never sees half a file).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let bytes = self.to_bytes();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    }

    /// Reads the artifact at `path`.
    pub fn read(path: &Path) -> Result<Artifact, ReadError> {
        let at = |source| ReadError {
            path: path.to_path_buf(),
            source,
        };
        let start = std::time::Instant::now();
        let bytes = std::fs::read(path).map_err(|e| at(e.into()))?;
        let read = start.elapsed();
        let len = bytes.len();
        let artifact =
            (ArtifactFile::parse(Arc::new(bytes)).and_then(|f| f.decode())).map_err(at)?;
        tracing::info!(
            path = %path.display(),
            bytes = len,
            read_ms = read.as_secs_f64() * 1e3,
            decode_ms = (start.elapsed() - read).as_secs_f64() * 1e3,
            "read artifact"
        );
        Ok(artifact)
    }

    /// Reads an artifact from its bytes, checking everything before it is trusted; every
    /// graph is decoded, the plans are left out (see [`ArtifactFile`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Artifact, ArtifactError> {
        let file = ArtifactFile::parse(Arc::new(bytes.to_vec()))?;
        file.decode()
    }
}

/// A graph named `name` of these inputs (names and declared types) and nothing else: an
/// artifact's interface.
pub fn interface_of(name: &str, inputs: &[lathe_ir::GraphInput]) -> Graph {
    let mut interface = Graph::new(name);
    for i in inputs {
        interface.add_input(i.name.clone(), i.ty.clone());
    }
    interface
}

/// A stored plan's bytes, and where its blob lies in the file's bytes.
pub type PlanBytes<'a> = (&'a [u8], std::ops::Range<usize>);

/// The bytes an [`ArtifactFile`] reads from: the file mapped into memory, or read.
pub type Bytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// An artifact checked (format, length, checksum, sections, `meta`) but not decoded: each
/// graph is decoded when asked for, and plans are handed out where they lie in its bytes.
pub struct ArtifactFile {
    bytes: Bytes,
    /// Each section's name, place in `bytes` and checksum.
    sections: Vec<(String, std::ops::Range<usize>, u32)>,
    pub meta: Meta,
}

impl std::fmt::Debug for ArtifactFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactFile")
            .field("bytes", &self.all().len())
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl ArtifactFile {
    /// Checks `bytes` (format, length, the header's checksum, the section table) and reads its
    /// `meta` section. Each other section's checksum is checked when it is read.
    pub fn parse(bytes: Bytes) -> Result<ArtifactFile, ArtifactError> {
        let all: &[u8] = (*bytes).as_ref();
        let base = all.as_ptr() as usize;
        let s = Sections::parse(all, FORMAT_VERSION)?;
        let meta: Meta = from_json(s.require("meta")?, "meta")?;
        let sections = (s.iter())
            .map(|sec| {
                let b = sec.unchecked();
                let start = b.as_ptr() as usize - base;
                (sec.name.to_string(), start..start + b.len(), sec.crc())
            })
            .collect();
        let file = ArtifactFile {
            bytes: Arc::clone(&bytes),
            sections,
            meta,
        };
        if file.meta.specializations.is_empty() && !file.has_generic() {
            return Err(ArtifactError::Corrupt(
                "it holds neither a generic graph nor a specialization".to_string(),
            ));
        }
        Ok(file)
    }

    fn all(&self) -> &[u8] {
        (*self.bytes).as_ref()
    }

    /// Where the section `name` lies and its checksum, if the file has it.
    fn find(&self, name: &str) -> Option<(std::ops::Range<usize>, u32)> {
        let (_, range, crc) = self.sections.iter().find(|(n, _, _)| n == name)?;
        Some((range.clone(), *crc))
    }

    /// Checks every section against its checksum (loading checks only those it reads).
    pub fn verify(&self) -> Result<(), ArtifactError> {
        for (name, _, _) in &self.sections {
            self.get(name)?;
        }
        Ok(())
    }

    /// The bytes of section `name`, checked against its checksum.
    fn get(&self, name: &str) -> Result<Option<&[u8]>, ArtifactError> {
        let Some((name, range, crc)) = self.sections.iter().find(|(n, _, _)| n == name) else {
            return Ok(None);
        };
        container::Section::at(name, &self.all()[range.clone()], *crc)
            .read()
            .map(Some)
    }

    fn require(&self, name: &str) -> Result<&[u8], ArtifactError> {
        self.get(name)?
            .ok_or_else(|| ArtifactError::Corrupt(format!("it has no `{name}` section")))
    }

    /// The bytes it reads from (what a decoded plan keeps alive).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Whether it holds the generic graph.
    pub fn has_generic(&self) -> bool {
        self.find("generic").is_some()
    }

    /// A graph holding the model's inputs (names and declared types) and nothing else.
    pub fn interface(&self) -> Result<Graph, ArtifactError> {
        let text = self.text("interface")?;
        lathe_ir::text::parse(text)
            .map_err(|e| ArtifactError::Corrupt(format!("section `interface`: {e}")))
    }

    /// The generic graph, decoded now with the weights it uses; `None` when left out.
    pub fn generic(&self) -> Result<Option<Graph>, ArtifactError> {
        if !self.has_generic() {
            return Ok(None);
        }
        let weights = self.weights()?;
        self.graph("generic", &weights).map(Some)
    }

    /// Whether specialization `i` has a stored plan.
    pub fn has_plan(&self, i: usize) -> bool {
        self.find(&format!("plan/{i}")).is_some() && self.find(&format!("plan/{i}.blob")).is_some()
    }

    /// Specialization `i`'s plan bytes and where its blob lies in [`ArtifactFile::bytes`],
    /// both checked against their checksums; `None` when it has no stored plan.
    pub fn plan(&self, i: usize) -> Result<Option<PlanBytes<'_>>, ArtifactError> {
        let Some(plan) = self.get(&format!("plan/{i}"))? else {
            return Ok(None);
        };
        let name = format!("plan/{i}.blob");
        if self.get(&name)?.is_none() {
            return Ok(None);
        }
        Ok(self.find(&name).map(|(blob, _)| (plan, blob)))
    }

    /// Per specialization, the bytes of its stored plan and of the plan's blob (packed
    /// weights), or `None` when no plan is stored.
    pub fn plan_sizes(&self) -> Vec<Option<(usize, usize)>> {
        (0..self.meta.specializations.len())
            .map(|i| {
                let (plan, _) = self.find(&format!("plan/{i}"))?;
                let (blob, _) = self.find(&format!("plan/{i}.blob"))?;
                Some((plan.len(), blob.len()))
            })
            .collect()
    }

    /// Every graph decoded (the plans are left out).
    pub fn decode(&self) -> Result<Artifact, ArtifactError> {
        let weights = self.weights()?;
        let generic = match self.has_generic() {
            true => Some(self.graph("generic", &weights)?),
            false => None,
        };
        let specializations = (0..self.meta.specializations.len())
            .map(|i| self.graph(&format!("spec/{i}"), &weights))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Artifact {
            meta: self.meta.clone(),
            interface: self.interface()?,
            generic,
            specializations,
            plans: Vec::new(),
        })
    }

    fn text(&self, name: &str) -> Result<&str, ArtifactError> {
        std::str::from_utf8(self.require(name)?)
            .map_err(|_| ArtifactError::Corrupt(format!("section `{name}` is not UTF-8")))
    }

    fn weights(&self) -> Result<Vec<Arc<Tensor>>, ArtifactError> {
        let index: Vec<WeightEntry> = from_json(self.require("weights.index")?, "weights.index")?;
        let blob = self.require("weights")?;
        index
            .iter()
            .enumerate()
            .map(|(i, e)| weight(blob, i, e).map(Arc::new))
            .collect()
    }

    fn graph(&self, name: &str, weights: &[Arc<Tensor>]) -> Result<Graph, ArtifactError> {
        parse_with_constants(self.text(name)?, weights)
            .map_err(|e| ArtifactError::Corrupt(format!("section `{name}`: {e}")))
    }
}

/// Weight `i`, checked against the weights section before it is read.
fn weight(blob: &[u8], i: usize, e: &WeightEntry) -> Result<Tensor, ArtifactError> {
    let bad = |m: String| ArtifactError::Corrupt(format!("weight {i}: {m}"));
    let dtype: DType = e.dtype.parse().map_err(|m: String| bad(m))?;
    let size = (e.dims.iter())
        .try_fold(dtype.size_bytes(), |n, &d| n.checked_mul(d))
        .filter(|&n| n as u64 == e.bytes)
        .ok_or_else(|| bad(format!("{} bytes do not fit {:?}", e.bytes, e.dims)))?;
    let start = usize::try_from(e.offset).ok().filter(|&o| o <= blob.len());
    let range = start
        .and_then(|o| Some(o..o.checked_add(size)?))
        .filter(|r| r.end <= blob.len())
        .ok_or_else(|| bad(format!("{size} bytes at {} run past the weights", e.offset)))?;
    Tensor::from_le_bytes(dtype, &e.dims, &blob[range]).map_err(bad)
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("plain data serializes")
}

fn from_json<'a, T: Deserialize<'a>>(bytes: &'a [u8], section: &str) -> Result<T, ArtifactError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ArtifactError::Corrupt(format!("section `{section}`: {e}")))
}

#[cfg(test)]
mod tests;
