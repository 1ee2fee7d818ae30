//! TensorFlow Serving's API, shared by its REST and gRPC forms: model specs, Predict on named
//! tensors, Classify and Regress on tf.Examples, model metadata (`SignatureDef`s) and status.

use crate::convert::{self, shape_proto};
use crate::error::{invalid, Result, ServeError};
use crate::repository::{Repository, VersionChoice, VersionState};
use crate::servable::{Servable, TensorInfo};
use lathe_ir::{DType, Tensor};
use lathe_proto::tensorflow::error::Code;
use lathe_proto::tensorflow::serving::{
    self as tfs, model_spec, model_version_status, ClassificationResult, Classifications,
    ModelSpec, ModelVersionStatus, RegressionResult, SignatureDefMap, StatusProto,
};
use lathe_proto::tensorflow::{self as tf, feature, tensor_info, Example, SignatureDef};
use std::sync::Arc;

/// The method name of a Predict signature.
pub const PREDICT_METHOD: &str = "tensorflow/serving/predict";

/// The servable a model spec asks for, with its signature checked.
pub fn resolve(repo: &Repository, spec: Option<&ModelSpec>) -> Result<Arc<Servable>> {
    let spec = spec.ok_or_else(|| invalid!("the request has no `model_spec`"))?;
    if spec.name.is_empty() {
        return Err(invalid!("the request's `model_spec.name` is empty"));
    }
    let choice = match &spec.version_choice {
        None => VersionChoice::Newest,
        Some(model_spec::VersionChoice::Version(v)) => VersionChoice::Number(*v),
        Some(model_spec::VersionChoice::VersionLabel(l)) => VersionChoice::Label(l.clone()),
    };
    let servable = repo.get(&spec.name, &choice)?;
    servable.check_signature(&spec.signature_name)?;
    Ok(servable)
}

/// The model spec a response carries: the model, the version that answered, the signature.
pub fn answered(s: &Servable) -> ModelSpec {
    ModelSpec {
        name: s.name.clone(),
        signature_name: s.signature.clone(),
        version_choice: Some(model_spec::VersionChoice::Version(s.version)),
    }
}

/// A `TensorInfo` of the signature.
fn tensor_info(info: &TensorInfo) -> tf::TensorInfo {
    let dtype = info
        .dtype
        .and_then(convert::tf_dtype)
        .map_or(0, |d| d as i32);
    let tensor_shape = match &info.dims {
        Some(_) => shape_proto(info.dims_i64()),
        None => tf::TensorShapeProto {
            dim: vec![],
            unknown_rank: true,
        },
    };
    tf::TensorInfo {
        dtype,
        tensor_shape: Some(tensor_shape),
        encoding: Some(tensor_info::Encoding::Name(tensor_name(&info.name))),
    }
}

/// The graph tensor a signature key stands for, as TensorFlow names it (`x:0`).
pub fn tensor_name(name: &str) -> String {
    if name.contains(':') {
        name.to_string()
    } else {
        format!("{name}:0")
    }
}

/// The servable's signature as a `SignatureDef`.
pub fn signature_def(s: &Servable) -> SignatureDef {
    let map = |infos: &[TensorInfo]| {
        infos
            .iter()
            .map(|i| (i.name.clone(), tensor_info(i)))
            .collect()
    };
    SignatureDef {
        inputs: map(&s.inputs),
        outputs: map(&s.outputs),
        method_name: PREDICT_METHOD.to_string(),
        defaults: Default::default(),
    }
}

/// GetModelMetadata: the `signature_def` field, the only one TensorFlow Serving defines.
pub fn metadata(s: &Servable, fields: &[String]) -> Result<tfs::GetModelMetadataResponse> {
    if fields.is_empty() {
        return Err(invalid!(
            "`metadata_field` is empty; the field TensorFlow Serving defines is `signature_def`"
        ));
    }
    if let Some(f) = fields.iter().find(|f| *f != "signature_def") {
        return Err(invalid!(
            "metadata field `{f}` is not known; the one there is is `signature_def`"
        ));
    }
    let map = SignatureDefMap {
        signature_def: [(s.signature.clone(), signature_def(s))]
            .into_iter()
            .collect(),
    };
    let any = prost_types::Any {
        type_url: "type.googleapis.com/tensorflow.serving.SignatureDefMap".to_string(),
        value: prost::Message::encode_to_vec(&map),
    };
    Ok(tfs::GetModelMetadataResponse {
        model_spec: Some(answered(s)),
        metadata: [("signature_def".to_string(), any)].into_iter().collect(),
    })
}

/// GetModelStatus: every version's state, or one version's.
pub fn status(repo: &Repository, spec: Option<&ModelSpec>) -> Result<tfs::GetModelStatusResponse> {
    let spec = spec.ok_or_else(|| invalid!("the request has no `model_spec`"))?;
    let states = repo.states(&spec.name)?;
    let wanted = match &spec.version_choice {
        None => None,
        Some(model_spec::VersionChoice::Version(v)) => Some(*v),
        Some(model_spec::VersionChoice::VersionLabel(l)) => Some(
            repo.get(&spec.name, &VersionChoice::Label(l.clone()))?
                .version,
        ),
    };
    let model_version_status: Vec<ModelVersionStatus> = states
        .into_iter()
        .filter(|(v, _)| wanted.is_none_or(|w| w == *v))
        .map(|(version, state)| {
            let (state, error) = match state {
                VersionState::Loading => (model_version_status::State::Loading, None),
                VersionState::Available(_) => (model_version_status::State::Available, None),
                VersionState::Failed { error, .. } => {
                    (model_version_status::State::End, Some(error))
                }
                VersionState::End => (model_version_status::State::End, None),
            };
            ModelVersionStatus {
                version,
                state: state as i32,
                status: Some(StatusProto {
                    error_code: if error.is_some() {
                        Code::Unknown
                    } else {
                        Code::Ok
                    } as i32,
                    error_message: error.unwrap_or_default(),
                }),
            }
        })
        .collect();
    if let (Some(w), true) = (wanted, model_version_status.is_empty()) {
        return Err(ServeError::NotFound(format!(
            "model `{}` has no version {w}",
            spec.name
        )));
    }
    Ok(tfs::GetModelStatusResponse {
        model_version_status,
    })
}

/// The tensors of a batch of tf.Examples, one per signature input: the feature of the input's
/// name in each example (the context's where the example lacks it), stacked along axis 0.
pub fn examples_to_inputs(
    s: &Servable,
    input: Option<&tfs::Input>,
) -> Result<Vec<(String, Tensor)>> {
    let input = input.ok_or_else(|| invalid!("the request has no `input`"))?;
    let (examples, context): (&[Example], Option<&Example>) = match &input.kind {
        Some(tfs::input::Kind::ExampleList(l)) => (&l.examples, None),
        Some(tfs::input::Kind::ExampleListWithContext(l)) => (&l.examples, l.context.as_ref()),
        None => return Err(invalid!("the request's `input` holds no examples")),
    };
    if examples.is_empty() {
        return Err(invalid!("the request's `input` holds no examples"));
    }
    let feature_of = |e: &'_ Example, name: &str| -> Option<tf::Feature> {
        let own = e.features.as_ref().and_then(|f| f.feature.get(name));
        own.or_else(|| context?.features.as_ref()?.feature.get(name))
            .cloned()
    };
    s.inputs
        .iter()
        .map(|info| {
            let dtype = info.dtype.unwrap_or(DType::F32);
            let row: Option<Vec<usize>> = (info.dims.as_ref())
                .and_then(|d| d.get(1..).map(|r| r.iter().copied().collect::<Option<Vec<usize>>>()))
                .flatten();
            let row = row.ok_or_else(|| {
                invalid!("input `{}` needs a known shape past its batch dimension to be read from tf.Examples", info.name)
            })?;
            let per_row: usize = row.iter().product();
            let mut vals: Vec<f64> = Vec::with_capacity(per_row * examples.len());
            for (k, e) in examples.iter().enumerate() {
                let f = feature_of(e, &info.name).ok_or_else(|| {
                    invalid!("example {k} has no feature `{}` (the model's inputs are its features)", info.name)
                })?;
                let before = vals.len();
                match f.kind {
                    Some(feature::Kind::FloatList(l)) => vals.extend(l.value.iter().map(|&v| f64::from(v))),
                    Some(feature::Kind::Int64List(l)) => vals.extend(l.value.iter().map(|&v| v as f64)),
                    Some(feature::Kind::BytesList(_)) => {
                        return Err(invalid!("example {k}'s feature `{}` is a bytes list; Lathe's models take numbers", info.name))
                    }
                    None => {}
                }
                if vals.len() - before != per_row {
                    return Err(invalid!(
                        "example {k}'s feature `{}` has {} values; input `{}` takes {per_row} per example",
                        info.name,
                        vals.len() - before,
                        info.name
                    ));
                }
            }
            let mut dims = vec![examples.len()];
            dims.extend(row);
            Ok((info.name.clone(), Tensor::from_f64(dtype, &dims, &vals)))
        })
        .collect()
}

/// Runs a Classify or Regress request's examples on `s`: the outputs, and how many examples.
pub async fn run_examples(
    s: &Arc<Servable>,
    input: Option<&tfs::Input>,
) -> Result<(Vec<(String, Tensor)>, usize)> {
    let inputs = examples_to_inputs(s, input)?;
    let n = inputs.first().map_or(0, |(_, t)| t.shape()[0]);
    s.check_inputs(&inputs)?;
    Ok((s.run(inputs, &[]).await?, n))
}

/// The output a Classify or Regress reads: the one named `preferred`, or the only one.
fn result_output<'a>(
    s: &Servable,
    outputs: &'a [(String, Tensor)],
    preferred: &str,
) -> Result<&'a Tensor> {
    if let Some((_, t)) = outputs.iter().find(|(n, _)| n == preferred) {
        return Ok(t);
    }
    match outputs {
        [(_, t)] => Ok(t),
        _ => Err(invalid!(
            "model `{}` has several outputs and none named `{preferred}`; use Predict",
            s.name
        )),
    }
}

/// Classify's result: per example, a score per class from the `scores` output (or the only
/// one, `[examples, classes]`), labelled from a `classes` output when the model has one.
pub fn classification(
    s: &Servable,
    outputs: &[(String, Tensor)],
    n: usize,
) -> Result<ClassificationResult> {
    let scores = result_output(s, outputs, "scores")?;
    let shape = scores.shape();
    if !scores.dtype().is_float() || shape.len() != 2 || shape[0] != n {
        return Err(invalid!(
            "model `{}` does not fit Classify: its scores are {}{:?}, not floats of shape [{n}, classes]",
            s.name,
            scores.dtype(),
            shape
        ));
    }
    let labels = outputs
        .iter()
        .find(|(name, _)| name == "classes")
        .map(|(_, t)| t.to_f64_vec());
    let vals = scores.to_f64_vec();
    let k = shape[1];
    Ok(ClassificationResult {
        classifications: (0..n)
            .map(|i| Classifications {
                classes: (0..k)
                    .map(|j| tfs::Class {
                        label: labels
                            .as_ref()
                            .and_then(|l| l.get(i * k + j))
                            .map(|l| l.to_string())
                            .unwrap_or_default(),
                        score: vals[i * k + j] as f32,
                    })
                    .collect(),
            })
            .collect(),
    })
}

/// Regress's result: one value per example from the `outputs` output (or the only one,
/// `[examples]` or `[examples, 1]`).
pub fn regression(
    s: &Servable,
    outputs: &[(String, Tensor)],
    n: usize,
) -> Result<RegressionResult> {
    let t = result_output(s, outputs, "outputs")?;
    let fits = t.dtype().is_float() && (t.shape() == [n] || t.shape() == [n, 1]);
    if !fits {
        return Err(invalid!(
            "model `{}` does not fit Regress: its output is {}{:?}, not floats of shape [{n}] or [{n}, 1]",
            s.name,
            t.dtype(),
            t.shape()
        ));
    }
    Ok(RegressionResult {
        regressions: t
            .to_f64_vec()
            .into_iter()
            .map(|v| tfs::Regression { value: v as f32 })
            .collect(),
    })
}
