//! The Open Inference Protocol (KServe v2), shared by its REST and gRPC forms: resolving a
//! model and version, metadata, and the gRPC form of infer (typed contents or raw bytes).

use crate::convert::{self, checked_elements, from_kserve_dtype, kserve_dims, kserve_dtype};
use crate::error::{invalid, Result, ServeError};
use crate::repository::{Repository, VersionChoice, VersionState};
use crate::servable::{Servable, TensorInfo};
use lathe_ir::{DType, Tensor};
use lathe_proto::inference::{
    model_infer_response::InferOutputTensor, model_metadata_response::TensorMetadata,
    ModelInferRequest, ModelInferResponse, ModelMetadataResponse, ServerMetadataResponse,
};
use std::sync::Arc;

/// What the server calls itself in server metadata.
pub const SERVER_NAME: &str = "lathe";

/// The platform models report (the runtime serving them).
pub const PLATFORM: &str = "lathe";

pub fn server_metadata() -> ServerMetadataResponse {
    ServerMetadataResponse {
        name: SERVER_NAME.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        extensions: vec!["binary_tensor_data".to_string()],
    }
}

/// The servable for a model name and a version string (empty: the newest).
pub fn resolve(repo: &Repository, name: &str, version: &str) -> Result<Arc<Servable>> {
    let choice = if version.is_empty() {
        VersionChoice::Newest
    } else {
        VersionChoice::Number(
            version
                .parse()
                .map_err(|_| invalid!("model version `{version}` is not a number"))?,
        )
    };
    repo.get(name, &choice)
}

fn tensor_metadata(i: &TensorInfo) -> TensorMetadata {
    TensorMetadata {
        name: i.name.clone(),
        datatype: i.dtype.and_then(kserve_dtype).unwrap_or("").to_string(),
        shape: i.dims_i64(),
    }
}

/// A model's metadata; `versions` lists every available version.
pub fn model_metadata(repo: &Repository, s: &Servable) -> ModelMetadataResponse {
    let versions = (repo.states(&s.name).unwrap_or_default().into_iter())
        .filter(|(_, st)| matches!(st, VersionState::Available(_)))
        .map(|(v, _)| v.to_string())
        .collect();
    ModelMetadataResponse {
        name: s.name.clone(),
        versions,
        platform: PLATFORM.to_string(),
        inputs: s.inputs.iter().map(tensor_metadata).collect(),
        outputs: s.outputs.iter().map(tensor_metadata).collect(),
    }
}

/// The dtype named by an input's `datatype`, which must be the model input's.
pub fn input_dtype(name: &str, datatype: &str) -> Result<DType> {
    let dtype = from_kserve_dtype(datatype).ok_or_else(|| {
        if datatype == "BYTES" {
            invalid!("input `{name}`: BYTES tensors feed string inputs, and Lathe's models take no strings")
        } else {
            invalid!("input `{name}`: datatype `{datatype}` is not one of the protocol's")
        }
    })?;
    Ok(dtype)
}

/// The inputs of a gRPC infer request: each from `raw_input_contents` when given (one entry
/// per input), else from its typed `contents`.
pub fn grpc_inputs(
    s: &Servable,
    req: &ModelInferRequest,
    max_bytes: usize,
) -> Result<Vec<(String, Tensor)>> {
    if !req.raw_input_contents.is_empty() && req.raw_input_contents.len() != req.inputs.len() {
        return Err(invalid!(
            "`raw_input_contents` holds {} entries for {} inputs; give one per input or none",
            req.raw_input_contents.len(),
            req.inputs.len()
        ));
    }
    req.inputs
        .iter()
        .enumerate()
        .map(|(k, i)| {
            let what = format!("input `{}`", i.name);
            s.input(&i.name)?;
            let dtype = input_dtype(&i.name, &i.datatype)?;
            let dims = kserve_dims(&what, &i.shape)?;
            checked_elements(&what, dtype, &dims, max_bytes)?;
            let t = match req.raw_input_contents.get(k) {
                Some(raw) => {
                    Tensor::from_le_bytes(dtype, &dims, raw).map_err(|e| invalid!("{what}: {e}"))?
                }
                None => {
                    let contents = i
                        .contents
                        .as_ref()
                        .ok_or_else(|| invalid!("{what} has no `contents`"))?;
                    convert::from_contents(&what, dtype, &dims, contents)?
                }
            };
            Ok((i.name.clone(), t))
        })
        .collect()
}

/// The gRPC infer response: each output's bytes in `raw_output_contents`.
pub fn grpc_response(
    s: &Servable,
    id: String,
    outputs: Vec<(String, Tensor)>,
) -> Result<ModelInferResponse> {
    let mut response = ModelInferResponse {
        model_name: s.name.clone(),
        model_version: s.version.to_string(),
        id,
        ..ModelInferResponse::default()
    };
    for (name, t) in outputs {
        let datatype = kserve_dtype(t.dtype()).ok_or_else(|| {
            ServeError::Internal(format!(
                "output `{name}` is {}, which the protocol has no datatype for",
                t.dtype()
            ))
        })?;
        response.outputs.push(InferOutputTensor {
            name,
            datatype: datatype.to_string(),
            shape: t.shape().iter().map(|&d| d as i64).collect(),
            ..InferOutputTensor::default()
        });
        response.raw_output_contents.push(t.to_le_bytes());
    }
    Ok(response)
}
