//! TensorFlow SavedModel directories: `saved_model.pb` and the `variables/` checkpoint.
//!
//! A SavedModel holds one or more MetaGraphDefs, each tagged (`serve` for inference) and each
//! with signatures: named input and output tensors of its GraphDef. Importing one signature:
//!
//! 1. the MetaGraphDef with the requested tag (`serve` by default) and its signature
//!    (`serving_default` by default);
//! 2. the GraphDef cut down to what the signature's outputs read, its input placeholders
//!    first, named by the signature's keys (in key order), as are the outputs;
//! 3. every variable the cut graph reads (a `VarHandleOp`, or TF1's `VariableV2`) becomes a
//!    constant read from the checkpoint; `ReadVariableOp` of it is an identity;
//! 4. function calls inlined and the graph imported as a frozen one is ([`super::build`]).
//!
//! Which checkpoint entry holds a variable: TensorFlow 2 binds each signature function's
//! captured variables to nodes of the object graph (`SavedConcreteFunction.bound_inputs`), and
//! the checkpoint's own object graph (`_CHECKPOINTABLE_OBJECT_GRAPH`, same node ids) gives each
//! its key (`.../.ATTRIBUTES/VARIABLE_VALUE`). A variable found no other way (TensorFlow 1)
//! is looked up under its `shared_name`, then its node name.

use super::bundle::Bundle;
use super::{build, Interface};
use crate::import::ImportError;
use lathe_ir::{Graph, Tensor};
use lathe_proto::tensorflow::{
    attr_value, tensor_info, GraphDef, MetaGraphDef, NodeDef, SavedModel, SignatureDef,
    TrackableObjectGraph,
};
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The tag of the inference MetaGraphDef.
pub const DEFAULT_TAG: &str = "serve";
/// The signature served when none is named.
pub const DEFAULT_SIGNATURE: &str = "serving_default";
/// The signature key TensorFlow uses for the initialization op: not a model signature.
const INIT_OP_SIGNATURE: &str = "__saved_model_init_op";

/// Which part of a SavedModel to import.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedModelOptions {
    /// The MetaGraphDef's tag; [`DEFAULT_TAG`] when `None`.
    pub tag: Option<String>,
    /// The signature; [`DEFAULT_SIGNATURE`] when `None`.
    pub signature: Option<String>,
}

/// Whether `dir` looks like a SavedModel (it holds `saved_model.pb` or `saved_model.pbtxt`).
pub fn is_saved_model(dir: &Path) -> bool {
    dir.join("saved_model.pb").is_file() || dir.join("saved_model.pbtxt").is_file()
}

/// Reads `dir/saved_model.pb`, or else `dir/saved_model.pbtxt` (protobuf text format).
pub fn read(dir: &Path) -> Result<SavedModel, ImportError> {
    let pb = dir.join("saved_model.pb");
    if !pb.is_file() {
        let txt = dir.join("saved_model.pbtxt");
        if txt.is_file() {
            return read_text(&txt);
        }
        return Err(ImportError::file(
            dir,
            "not a SavedModel directory: it has no saved_model.pb or saved_model.pbtxt",
        ));
    }
    let bytes =
        std::fs::read(&pb).map_err(|e| ImportError::file(&pb, format!("cannot read: {e}")))?;
    SavedModel::decode(bytes.as_slice())
        .map_err(|e| ImportError::file(&pb, format!("not a valid SavedModel ({e})")))
}

/// Parses a SavedModel in protobuf text format, through reflection on the embedded descriptors.
fn read_text(txt: &Path) -> Result<SavedModel, ImportError> {
    use prost_reflect::{DescriptorPool, DynamicMessage};
    let text = std::fs::read_to_string(txt)
        .map_err(|e| ImportError::file(txt, format!("cannot read: {e}")))?;
    let pool = DescriptorPool::decode(lathe_proto::FILE_DESCRIPTOR_SET)
        .expect("lathe-proto embeds a valid descriptor set");
    let desc = pool
        .get_message_by_name("tensorflow.SavedModel")
        .expect("the descriptor set holds tensorflow.SavedModel");
    let msg = DynamicMessage::parse_text_format(desc, &text)
        .map_err(|e| ImportError::file(txt, format!("not a valid text-format SavedModel ({e})")))?;
    SavedModel::decode(msg.encode_to_vec().as_slice())
        .map_err(|e| ImportError::file(txt, format!("not a valid SavedModel ({e})")))
}

/// The tags of each MetaGraphDef, joined with `,`.
pub fn tag_sets(sm: &SavedModel) -> Vec<String> {
    sm.meta_graphs
        .iter()
        .map(|m| {
            m.meta_info_def
                .as_ref()
                .map(|i| i.tags.join(","))
                .unwrap_or_default()
        })
        .collect()
}

/// The index of the MetaGraphDef tagged `tag`.
pub fn meta_graph(sm: &SavedModel, tag: &str, file: &Path) -> Result<usize, ImportError> {
    sm.meta_graphs
        .iter()
        .position(|m| {
            m.meta_info_def
                .as_ref()
                .is_some_and(|i| i.tags.iter().any(|t| t == tag))
        })
        .ok_or_else(|| {
            ImportError::file(
                file,
                format!(
                    "no MetaGraphDef has tag `{tag}` (tag sets: {})",
                    list(&tag_sets(sm))
                ),
            )
        })
}

/// The model signatures of `mg` (not the init op), sorted by name.
pub fn signatures(mg: &MetaGraphDef) -> Vec<(&str, &SignatureDef)> {
    let mut s: Vec<(&str, &SignatureDef)> = mg
        .signature_def
        .iter()
        .filter(|(k, _)| k.as_str() != INIT_OP_SIGNATURE)
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    s.sort_by_key(|(k, _)| *k);
    s
}

/// Imports one signature of the SavedModel in `dir`.
pub fn import_dir(dir: &Path, opts: &SavedModelOptions) -> Result<Graph, ImportError> {
    let pb = dir.join("saved_model.pb");
    let mut sm = read(dir)?;
    let tag = opts.tag.as_deref().unwrap_or(DEFAULT_TAG);
    // Owned from here on, the rest of the SavedModel dropped: the protobuf graph and its
    // library are as big as a small model's weights, so nothing of it is kept (or copied)
    // longer than needed while the weights are read.
    let mut mg = sm.meta_graphs.swap_remove(meta_graph(&sm, tag, &pb)?);
    drop(sm);
    let sig_name = opts.signature.as_deref().unwrap_or(DEFAULT_SIGNATURE);
    let sigs = signatures(&mg);
    let sig = sigs
        .iter()
        .find(|(k, _)| *k == sig_name)
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            let names: Vec<String> = sigs.iter().map(|(k, _)| k.to_string()).collect();
            ImportError::file(
                &pb,
                format!("no signature `{sig_name}` (signatures: {})", list(&names)),
            )
        })?;
    let iface = interface(sig, sig_name, &pb)?;
    let mut gd: GraphDef = mg
        .graph_def
        .take()
        .ok_or_else(|| ImportError::file(&pb, "the MetaGraphDef has no graph"))?;
    super::keep_interface(&mut gd, &iface, &pb)?;
    let checkpoint = checkpoint_keys(dir, &mg, &gd)?;
    drop(mg);
    // Calls inlined (which drops the library) before the weights are read.
    let regions = super::inline::inline_calls(&mut gd, dir)?;
    let consts = match checkpoint {
        Some((bundle, keys)) => read_variables(&bundle, &keys, &mut gd)?,
        None => HashMap::new(),
    };
    build(gd, consts, regions, dir, Some(&iface))
}

/// The signature's inputs (Placeholder node, key) and outputs (key, tensor), in key order.
fn interface(sig: &SignatureDef, name: &str, file: &Path) -> Result<Interface, ImportError> {
    let tensor = |key: &str, info: &lathe_proto::tensorflow::TensorInfo| match &info.encoding {
        Some(tensor_info::Encoding::Name(n)) => Ok(n.clone()),
        _ => Err(ImportError::file(
            file,
            format!(
                "signature `{name}`: `{key}` is a sparse or composite tensor, which is not \
                 supported"
            ),
        )),
    };
    let mut inputs = Vec::new();
    for (key, info) in sorted(&sig.inputs) {
        let t = tensor(key, info)?;
        let node = match super::parse_input(&t) {
            Some((n, 0)) => n.to_string(),
            _ => {
                return Err(ImportError::file(
                    file,
                    format!(
                        "signature `{name}`: input `{key}` is `{t}`, not a Placeholder's output"
                    ),
                ))
            }
        };
        inputs.push((node, key.to_string()));
    }
    let mut outputs = Vec::new();
    for (key, info) in sorted(&sig.outputs) {
        outputs.push((key.to_string(), tensor(key, info)?));
    }
    if outputs.is_empty() {
        return Err(ImportError::file(
            file,
            format!("signature `{name}` has no outputs"),
        ));
    }
    Ok(Interface { inputs, outputs })
}

/// Checkpoint keys by variable node name.
type VarKeys = HashMap<String, String>;

/// Whether `n` is a variable (resource or TF1 reference variable).
fn is_var(n: &NodeDef) -> bool {
    matches!(n.op.as_str(), "VarHandleOp" | "VariableV2" | "Variable")
}

/// The checkpoint (its index read) and the keys the object graph gives the variables of `gd`,
/// when `gd` has variables.
fn checkpoint_keys(
    dir: &Path,
    mg: &MetaGraphDef,
    gd: &GraphDef,
) -> Result<Option<(Bundle, VarKeys)>, ImportError> {
    if !gd.node.iter().any(is_var) {
        return Ok(None);
    }
    let prefix: PathBuf = dir.join("variables").join("variables");
    let bundle = Bundle::open(&prefix).map_err(|e| ImportError::file(&e.file, e.message))?;
    let keys = object_graph_keys(mg, gd, &bundle)?;
    Ok(Some((bundle, keys)))
}

/// Turns every variable node of `gd` into a `Const` whose tensor, read from the checkpoint
/// (under `keys`' key, else its `shared_name`, else its name), is returned by node name (the
/// importer's table of converted constants).
fn read_variables(
    bundle: &Bundle,
    keys: &HashMap<String, String>,
    gd: &mut GraphDef,
) -> Result<HashMap<String, Result<Tensor, String>>, ImportError> {
    let mut consts = HashMap::new();
    for n in gd.node.iter_mut().filter(|n| is_var(n)) {
        let shared = match n.attr.get("shared_name").and_then(|a| a.value.as_ref()) {
            Some(attr_value::Value::S(s)) if !s.is_empty() => {
                Some(String::from_utf8_lossy(s).into_owned())
            }
            _ => None,
        };
        let key = keys
            .get(&n.name)
            .cloned()
            .or_else(|| shared.filter(|s| bundle.entry(s).is_some()))
            .or_else(|| bundle.entry(&n.name).map(|_| n.name.clone()))
            .ok_or_else(|| {
                ImportError::node(
                    &bundle.index_path(),
                    &n.name,
                    &n.op,
                    "the checkpoint has no value for this variable",
                )
            })?;
        let t = bundle
            .tensor(&key)
            .map_err(|e| ImportError::node(&e.file, &n.name, &n.op, e.message))?;
        let declared = super::attrs::Attrs(n).dtype("dtype").ok();
        if declared.is_some_and(|d| d != t.dtype()) {
            return Err(ImportError::node(
                &bundle.index_path(),
                &n.name,
                &n.op,
                format!(
                    "the variable is declared {} but checkpoint entry `{key}` is {}",
                    declared.map(|d| d.name()).unwrap_or_default(),
                    t.dtype().name()
                ),
            ));
        }
        n.op = "Const".into();
        n.attr.clear();
        consts.insert(n.name.clone(), Ok(t));
    }
    Ok(consts)
}

/// Checkpoint keys of the variables that calls in `gd` capture, by variable node name (see the
/// module notes).
fn object_graph_keys(
    mg: &MetaGraphDef,
    gd: &GraphDef,
    bundle: &Bundle,
) -> Result<HashMap<String, String>, ImportError> {
    let mut keys = HashMap::new();
    let Some(og) = &mg.object_graph_def else {
        return Ok(keys);
    };
    if bundle.entry("_CHECKPOINTABLE_OBJECT_GRAPH").is_none() {
        return Ok(keys);
    }
    let err = |e: super::bundle::BundleError| ImportError::file(&e.file, e.message);
    let raw = bundle
        .strings("_CHECKPOINTABLE_OBJECT_GRAPH")
        .map_err(err)?;
    let tog = raw
        .first()
        .map(|b| TrackableObjectGraph::decode(b.as_slice()))
        .transpose()
        .map_err(|e| {
            ImportError::file(
                &bundle.index_path(),
                format!("the checkpoint's object graph does not decode: {e}"),
            )
        })?
        .unwrap_or_default();
    for call in &gd.node {
        if !matches!(
            call.op.as_str(),
            "StatefulPartitionedCall" | "PartitionedCall"
        ) {
            continue;
        }
        let f = match call.attr.get("f").and_then(|a| a.value.as_ref()) {
            Some(attr_value::Value::Func(f)) => &f.name,
            _ => continue,
        };
        let Some(cf) = og.concrete_functions.get(f) else {
            continue;
        };
        let data: Vec<&String> = call.input.iter().filter(|i| !i.starts_with('^')).collect();
        let Some(captured) = data.len().checked_sub(cf.bound_inputs.len()) else {
            continue;
        };
        for (input, &node_id) in data[captured..].iter().zip(&cf.bound_inputs) {
            let var = super::parse_input(input).map(|(n, _)| n).unwrap_or(input);
            let key = usize::try_from(node_id)
                .ok()
                .and_then(|i| tog.nodes.get(i))
                .and_then(|o| o.attributes.iter().find(|a| a.name == "VARIABLE_VALUE"))
                .map(|a| a.checkpoint_key.clone());
            if let Some(key) = key {
                keys.insert(var.to_string(), key);
            }
        }
    }
    Ok(keys)
}

fn sorted<V>(m: &HashMap<String, V>) -> Vec<(&str, &V)> {
    let mut v: Vec<(&str, &V)> = m.iter().map(|(k, v)| (k.as_str(), v)).collect();
    v.sort_by_key(|(k, _)| *k);
    v
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What a SavedModel holds, for `lathe inspect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedModelInfo {
    /// The tags of each MetaGraphDef.
    pub tag_sets: Vec<Vec<String>>,
    /// The signatures of the MetaGraphDef described, by name.
    pub signatures: Vec<SignatureInfo>,
    /// The names of its graph's library functions, sorted.
    pub functions: Vec<String>,
}

/// One signature: its method and its inputs and outputs as `(key, type)`, e.g.
/// `("x", "f32[?,4]")` (`?` for an unknown dimension).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureInfo {
    pub name: String,
    pub method: String,
    pub inputs: Vec<(String, String)>,
    pub outputs: Vec<(String, String)>,
}

/// Describes the SavedModel in `dir`: every tag set, and the signatures and functions of the
/// MetaGraphDef tagged `tag` ([`DEFAULT_TAG`] when `None`).
pub fn describe(dir: &Path, tag: Option<&str>) -> Result<SavedModelInfo, ImportError> {
    let sm = read(dir)?;
    let mg =
        &sm.meta_graphs[meta_graph(&sm, tag.unwrap_or(DEFAULT_TAG), &dir.join("saved_model.pb"))?];
    let ty = |info: &lathe_proto::tensorflow::TensorInfo| {
        let dtype = super::tensor::dtype(info.dtype)
            .map(|d| d.name().to_string())
            .unwrap_or_else(|_| {
                lathe_proto::tensorflow::DataType::try_from(info.dtype)
                    .map(|d| d.as_str_name().trim_start_matches("DT_").to_lowercase())
                    .unwrap_or_else(|_| format!("dtype#{}", info.dtype))
            });
        let dims = match &info.tensor_shape {
            Some(s) if !s.unknown_rank => s
                .dim
                .iter()
                .map(|d| {
                    if d.size < 0 {
                        "?".into()
                    } else {
                        d.size.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(","),
            _ => "*".into(),
        };
        format!("{dtype}[{dims}]")
    };
    let signatures = signatures(mg)
        .into_iter()
        .map(|(name, s)| SignatureInfo {
            name: name.to_string(),
            method: s.method_name.clone(),
            inputs: sorted(&s.inputs)
                .into_iter()
                .map(|(k, i)| (k.to_string(), ty(i)))
                .collect(),
            outputs: sorted(&s.outputs)
                .into_iter()
                .map(|(k, i)| (k.to_string(), ty(i)))
                .collect(),
        })
        .collect();
    let mut functions: Vec<String> = mg
        .graph_def
        .iter()
        .flat_map(|g| g.library.iter())
        .flat_map(|l| l.function.iter())
        .filter_map(|f| f.signature.as_ref().map(|s| s.name.clone()))
        .collect();
    functions.sort();
    Ok(SavedModelInfo {
        tag_sets: sm
            .meta_graphs
            .iter()
            .map(|m| {
                m.meta_info_def
                    .as_ref()
                    .map(|i| i.tags.clone())
                    .unwrap_or_default()
            })
            .collect(),
        signatures,
        functions,
    })
}
