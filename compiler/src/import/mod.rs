//! Importers: one per source format, each turning a file into an IR [`Graph`].
//!
//! Importers know their source format; nothing after them does. Every error names the file,
//! and where one node is at fault, the node and its op.

mod bound;
#[cfg(feature = "onnx")]
pub mod onnx;
#[cfg(feature = "tensorflow")]
pub mod tensorflow;
#[cfg(any(feature = "tensorflow", feature = "onnx"))]
mod value_list;
#[cfg(any(feature = "tensorflow", feature = "onnx"))]
mod wire;

pub use bound::{BoundImport, ModelFile};
use lathe_ir::{Graph, Tensor, TensorType};
use std::fmt;
use std::path::{Path, PathBuf};

/// An import failure: which file, which node and op (when one is at fault), and what.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportError {
    pub file: PathBuf,
    pub node: Option<String>,
    pub op: Option<String>,
    pub message: String,
    /// Set when the importer had to know a value that comes from graph inputs (a `Resize`'s
    /// scales, `Squeeze` axes fed as an input): importing again with those inputs bound
    /// ([`load_bound`]) can succeed. The message names them too.
    pub needs_values: Option<Box<NeedsValues>>,
}

/// What an import that needs input values reports: which inputs, and the model's interface,
/// so that a runtime can take calls and import the model once per value of those inputs (as
/// `tf.function` traces once per Python value).
#[derive(Debug, Clone, PartialEq)]
pub struct NeedsValues {
    /// The graph's name.
    pub graph: String,
    /// The graph inputs whose values the importer needs, in input order.
    pub inputs: Vec<String>,
    /// Every graph input of the model: its name and declared type, in order.
    pub declared: Vec<(String, TensorType)>,
    /// The names of the model's outputs, in order.
    pub outputs: Vec<String>,
}

impl ImportError {
    /// An error about the file as a whole.
    pub fn file(file: &Path, message: impl Into<String>) -> ImportError {
        ImportError {
            file: file.to_path_buf(),
            node: None,
            op: None,
            message: message.into(),
            needs_values: None,
        }
    }

    /// An error about one node of the file.
    pub fn node(file: &Path, node: &str, op: &str, message: impl Into<String>) -> ImportError {
        ImportError {
            file: file.to_path_buf(),
            node: Some(node.to_string()),
            op: Some(op.to_string()),
            message: message.into(),
            needs_values: None,
        }
    }
}

impl NeedsValues {
    /// The model's inputs as a graph with no nodes and no outputs: what to read the inputs'
    /// names and declared types from, and check a call's input types against.
    pub fn interface(&self) -> Graph {
        let mut g = Graph::new(self.graph.clone());
        for (name, ty) in &self.declared {
            g.add_input(name.clone(), ty.clone());
        }
        g
    }
}

/// Names from a model file are data: control characters are escaped so that an error stays
/// one line whatever the file holds.
fn one_line(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", one_line(&self.file.display().to_string()))?;
        match (&self.node, &self.op) {
            (Some(n), Some(op)) => write!(f, "node `{}` (op {}): ", one_line(n), one_line(op))?,
            (Some(n), None) => write!(f, "node `{}`: ", one_line(n))?,
            _ => {}
        }
        f.write_str(&one_line(&self.message))
    }
}

impl std::error::Error for ImportError {}

/// The formats Lathe reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    /// A TensorFlow frozen `GraphDef` (`.pb`).
    TensorFlowGraphDef,
    /// A TensorFlow SavedModel directory (`saved_model.pb` + `variables/`).
    SavedModel,
    /// An ONNX model (`.onnx`).
    Onnx,
    /// Lathe's own IR text format (`.lir`).
    LatheText,
}

impl ModelFormat {
    /// Tells the format from the path and content: a directory is a SavedModel; a file that
    /// starts like a serialized ONNX `ModelProto` (its `ir_version` field) is ONNX and one that
    /// starts like a `GraphDef` (a node) a frozen graph, whatever their names; otherwise the
    /// extension decides.
    pub fn detect(path: &Path) -> Result<ModelFormat, ImportError> {
        if path.is_dir() {
            return Ok(ModelFormat::SavedModel);
        }
        if !path.exists() {
            return Err(ImportError::file(path, "no such file or directory"));
        }
        let ext = path.extension().and_then(|e| e.to_str());
        if ext == Some("lir") {
            return Ok(ModelFormat::LatheText);
        }
        let mut first = [0u8; 1];
        let read = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read(&mut f, &mut first))
            .map_err(|e| ImportError::file(path, e.to_string()))?;
        match (read, first[0]) {
            // ModelProto field 1 (`ir_version`, a varint), which exporters write first.
            (1, 0x08) => return Ok(ModelFormat::Onnx),
            // GraphDef field 1 (`node`, a message).
            (1, 0x0a) => return Ok(ModelFormat::TensorFlowGraphDef),
            _ => {}
        }
        match ext {
            Some("pb") | Some("graphdef") => Ok(ModelFormat::TensorFlowGraphDef),
            Some("onnx") => Ok(ModelFormat::Onnx),
            _ => Err(ImportError::file(
                path,
                "unknown model format (expected a frozen GraphDef `.pb`, a SavedModel directory, \
                 an `.onnx` file or Lathe IR text `.lir`)",
            )),
        }
    }
}

/// What to load of a model that holds more than one graph.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// A SavedModel's MetaGraphDef tag (`serve` when `None`).
    pub tag: Option<String>,
    /// A SavedModel's signature (`serving_default` when `None`).
    pub signature: Option<String>,
    /// What each ONNX graph input that is a sequence or an optional holds, by name: the
    /// importer gives such an input as tensor inputs (see [`Container`]).
    pub containers: Vec<(String, Container)>,
}

/// What an ONNX graph input that is not a tensor holds in the calls a graph is imported for:
/// the IR's inputs are tensors, and a sequence has a length fixed while importing, as
/// `tf.function` traces a Python list of each length anew. A sequence input `s` of length `n`
/// becomes the tensor inputs `s[0]` ... `s[n-1]`; an optional input `o` that holds a tensor is
/// the tensor input `o`, and one that holds nothing is no input at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Container {
    /// A tensor (what an optional holds).
    Tensor,
    /// A sequence of `len` tensors; `rank` is their rank where the model declares no shape
    /// for them.
    Sequence { len: usize, rank: Option<usize> },
    /// An optional: `None` when it holds nothing, else what it holds.
    Optional(Option<Box<Container>>),
}

/// Loads a model file in any supported format and verifies the resulting graph.
pub fn load(path: &Path) -> Result<Graph, ImportError> {
    load_with(path, &LoadOptions::default())
}

/// [`load`], choosing what to load of a SavedModel; the options are an error for a format
/// that has no tags or signatures.
pub fn load_with(path: &Path, options: &LoadOptions) -> Result<Graph, ImportError> {
    load_bound(path, options, &[])
}

/// [`load_with`], with the graph inputs named in `bound` taken as constants of the given
/// values while importing (only ONNX models ask for this: see [`ImportError::needs_values`]).
/// The graph keeps them as inputs, with their declared types, but nothing reads them: the
/// graph is only right for calls whose values of those inputs are the bound ones, and the
/// caller keys what it compiles by them (the runtime's `Model` does).
pub fn load_bound(
    path: &Path,
    options: &LoadOptions,
    bound: &[(String, Tensor)],
) -> Result<Graph, ImportError> {
    let format = ModelFormat::detect(path)?;
    if !bound.is_empty() && format != ModelFormat::Onnx {
        return Err(ImportError::file(
            path,
            "graph inputs can only be bound to values in ONNX models",
        ));
    }
    if !options.containers.is_empty() && format != ModelFormat::Onnx {
        return Err(ImportError::file(
            path,
            "sequence and optional inputs can only be described for ONNX models",
        ));
    }
    if format != ModelFormat::SavedModel {
        if let Some(flag) = [("tag", &options.tag), ("signature", &options.signature)]
            .iter()
            .find(|(_, v)| v.is_some())
            .map(|(f, _)| f)
        {
            return Err(ImportError::file(
                path,
                format!("a {flag} can only be chosen in a SavedModel directory"),
            ));
        }
    }
    let graph =
        match format {
            #[cfg(feature = "tensorflow")]
            ModelFormat::TensorFlowGraphDef => tensorflow::import_file(path)?,
            #[cfg(not(feature = "tensorflow"))]
            ModelFormat::TensorFlowGraphDef => {
                return Err(ImportError::file(
                    path,
                    "this build of lathe-compiler cannot read TensorFlow GraphDef `.pb` files: it \
                 was built without the `tensorflow` feature",
                ))
            }
            ModelFormat::LatheText => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ImportError::file(path, e.to_string()))?;
                lathe_ir::text::parse(&text).map_err(|e| ImportError::file(path, e.to_string()))?
            }
            #[cfg(feature = "tensorflow")]
            ModelFormat::SavedModel => tensorflow::saved_model::import_dir(
                path,
                &tensorflow::saved_model::SavedModelOptions {
                    tag: options.tag.clone(),
                    signature: options.signature.clone(),
                },
            )?,
            #[cfg(not(feature = "tensorflow"))]
            ModelFormat::SavedModel => return Err(ImportError::file(
                path,
                "this build of lathe-compiler cannot read TensorFlow SavedModels: it was built \
                 without the `tensorflow` feature",
            )),
            #[cfg(feature = "onnx")]
            ModelFormat::Onnx => onnx::import_file_with(path, &options.containers, bound)?,
            #[cfg(not(feature = "onnx"))]
            ModelFormat::Onnx => return Err(ImportError::file(
                path,
                "this build of lathe-compiler cannot read ONNX models: it was built without the \
                 `onnx` feature",
            )),
        };
    lathe_ir::verify(&graph).map_err(|e| ImportError::file(path, e.to_string()))?;
    Ok(graph)
}
