//! The model argument every command that loads a model takes, with what to load of a
//! SavedModel; and [`Loaded`], a model as the commands that run it load it.

use anyhow::Result;
use clap::Args;
use lathe_compiler::artifact::{is_artifact_file, Artifact, ArtifactFile};
use lathe_compiler::{BoundImport, ImportError, LoadOptions, ModelFile, NeedsValues};
use lathe_ir::{Graph, TensorType};
use lathe_runtime::{Model, ModelOptions, RunError};
use std::path::PathBuf;
use std::sync::Arc;

/// Which model to load.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// The model: a SavedModel directory, a frozen GraphDef `.pb`, an ONNX model `.onnx`, Lathe IR text `.lir` or an
    /// artifact of `lathe compile` `.lathe` (the format is told from the content: a directory holding `saved_model.pb` is a SavedModel)
    pub model: PathBuf,
    /// SavedModel: the tag of the MetaGraphDef to load [default: serve]
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// SavedModel: the signature to load; its keys name the inputs and outputs
    /// [default: serving_default]
    #[arg(long, value_name = "NAME")]
    pub signature: Option<String>,
}

impl ModelArgs {
    /// The model file and what to load of it.
    pub fn file(&self) -> ModelFile {
        ModelFile {
            path: self.model.clone(),
            options: LoadOptions {
                tag: self.tag.clone(),
                signature: self.signature.clone(),
                containers: Vec::new(),
            },
        }
    }

    /// Loads the model's graph: an artifact's generic graph (or, compiled without it, its
    /// first specialization). A model that can only be imported with input values (see
    /// [`Loaded`]) is the importer's error, which names those inputs.
    pub fn load(&self) -> Result<Graph> {
        if let Some(a) = self.artifact()? {
            return Ok(a.declared().clone());
        }
        Ok(self.file().import(&[])?)
    }

    /// Loads the model to run it: an artifact, its graph, or the file to import once per
    /// value of the inputs the importer needs.
    pub fn load_to_run(&self) -> Result<Loaded> {
        if let Some(file) = self.artifact_file()? {
            let interface = file.interface().map_err(|error| RunError::Artifact {
                path: Some(self.model.clone()),
                error,
            })?;
            return Ok(Loaded::Artifact {
                file: Arc::new(file),
                interface,
            });
        }
        Ok(Loaded::new(self.file())?)
    }

    /// The model as a compiled artifact, when it is one (told by its first bytes).
    pub fn artifact(&self) -> Result<Option<Artifact>> {
        match self.artifact_file()? {
            Some(file) => Ok(Some(self.decode(&file)?)),
            None => Ok(None),
        }
    }

    /// Every graph of `file` (this model's artifact) decoded; an error names the file.
    pub fn decode(&self, file: &ArtifactFile) -> Result<Artifact> {
        Ok(file.decode().map_err(|error| RunError::Artifact {
            path: Some(self.model.clone()),
            error,
        })?)
    }

    /// The model as a compiled artifact, opened (mapped and checked, nothing decoded), when
    /// it is one.
    pub fn artifact_file(&self) -> Result<Option<ArtifactFile>> {
        if !is_artifact_file(&self.model) {
            return Ok(None);
        }
        Ok(Some(lathe_runtime::artifact::open(&self.model)?))
    }
}

/// A model loaded to run: its graph, or, when the importer needs the values of some inputs
/// (an ONNX `Resize` whose scales are an input), the file, imported again for each value of
/// them ([`Model::per_value`]).
pub enum Loaded {
    Graph(Graph),
    /// A compiled artifact, opened: its stored plans load as they are (or its specializations
    /// compile without passes) when the model is made.
    Artifact {
        file: Arc<ArtifactFile>,
        /// The model's inputs (a graph with no nodes).
        interface: Graph,
    },
    PerValue {
        file: Arc<ModelFile>,
        /// The model's inputs (a graph with no nodes).
        interface: Graph,
        /// The generic import's error, naming the inputs whose values it needs.
        needs: ImportError,
    },
}

impl Loaded {
    /// Imports `file`, keeping it to import per value when the importer needs input values.
    pub fn new(file: ModelFile) -> Result<Loaded, ImportError> {
        match file.import(&[]) {
            Ok(g) => Ok(Loaded::Graph(g)),
            Err(needs) => match needs.needs_values.as_deref().map(NeedsValues::interface) {
                Some(interface) => Ok(Loaded::PerValue {
                    file: Arc::new(file),
                    interface,
                    needs,
                }),
                None => Err(needs),
            },
        }
    }

    /// The graph whose inputs a call gives: the model's, or its interface.
    pub fn declared(&self) -> &Graph {
        match self {
            Loaded::Graph(g) => g,
            Loaded::Artifact { interface, .. } | Loaded::PerValue { interface, .. } => interface,
        }
    }

    /// Which inputs the importer needs the values of (none for a graph).
    pub fn needed_inputs(&self) -> &[String] {
        match self {
            Loaded::Graph(_) | Loaded::Artifact { .. } => &[],
            Loaded::PerValue { needs, .. } => needs
                .needs_values
                .as_deref()
                .map_or(&[], |n| n.inputs.as_slice()),
        }
    }

    /// A model that takes calls of any signature.
    pub fn model(&self, options: ModelOptions) -> Result<Model, RunError> {
        match self {
            Loaded::Graph(g) => Model::with_options(g.clone(), options),
            Loaded::Artifact { file, .. } => Model::from_artifact_file(file.clone(), options),
            Loaded::PerValue { file, needs, .. } => {
                Model::per_value(file.clone(), needs.clone(), options)
            }
        }
    }

    /// A model for calls of one input signature, `types`: compiled for it now, holding each
    /// weight once ([`Model::for_signature`]); a model imported per value compiles on its
    /// first call, when the values are known (it keeps no graph either).
    pub fn into_model_for(self, options: ModelOptions, types: &[TensorType]) -> Result<Model> {
        Ok(match self {
            Loaded::Graph(g) => Model::for_signature(g, options, types)?,
            Loaded::Artifact { file, .. } => Model::from_artifact_file(file, options)?,
            Loaded::PerValue { file, needs, .. } => Model::per_value(file, needs, options)?,
        })
    }
}
