//! Compiles the vendored TensorFlow and ONNX `.proto` files into Rust with prost.
//!
//! Parsing is done by `protox` (pure Rust), so no system `protoc` is needed.
//! The generated modules land in `OUT_DIR` as `tensorflow.rs` and `onnx.rs`
//! (one file per protobuf package) and are included by `src/lib.rs`.

use std::path::Path;

/// Every `.proto` file we compile, relative to `protos/`. Imports are resolved
/// against `protos/` too (and protox's built-in copies of the well-known types).
const PROTOS: &[&str] = &[
    // TensorFlow: GraphDef and friends.
    "tensorflow/core/framework/types.proto",
    "tensorflow/core/framework/tensor_shape.proto",
    "tensorflow/core/framework/resource_handle.proto",
    "tensorflow/core/framework/tensor.proto",
    "tensorflow/core/framework/attr_value.proto",
    "tensorflow/core/framework/full_type.proto",
    "tensorflow/core/framework/node_def.proto",
    "tensorflow/core/framework/op_def.proto",
    "tensorflow/core/framework/function.proto",
    "tensorflow/core/framework/versions.proto",
    "tensorflow/core/framework/graph_debug_info.proto",
    "tensorflow/core/framework/graph.proto",
    "tensorflow/core/framework/tensor_slice.proto",
    "tensorflow/core/framework/variable.proto",
    // TensorFlow: SavedModel and checkpoints.
    "tensorflow/core/protobuf/struct.proto",
    "tensorflow/core/protobuf/trackable_object_graph.proto",
    "tensorflow/core/protobuf/saved_object_graph.proto",
    "tensorflow/core/protobuf/saver.proto",
    "tensorflow/core/protobuf/meta_graph.proto",
    "tensorflow/core/protobuf/saved_model.proto",
    "tensorflow/core/protobuf/tensor_bundle.proto",
    // tf.Example, and TensorFlow Serving's and the Open Inference Protocol's messages (`lathe
    // serve`; their gRPC services are declared in `serve/build.rs`).
    "tensorflow/core/example/feature.proto",
    "tensorflow/core/example/example.proto",
    "tensorflow/core/protobuf/error_codes.proto",
    "tensorflow_serving/apis/model.proto",
    "tensorflow_serving/apis/predict.proto",
    "tensorflow_serving/apis/get_model_metadata.proto",
    "tensorflow_serving/apis/get_model_status.proto",
    "tensorflow_serving/apis/input.proto",
    "tensorflow_serving/apis/classification.proto",
    "tensorflow_serving/apis/regression.proto",
    "tensorflow_serving/apis/prediction_log.proto",
    "tensorflow_serving/config/model_server_config.proto",
    "inference/grpc_service.proto",
    // ONNX.
    "onnx/onnx.proto",
    "onnx/onnx-data.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("protos");
    println!("cargo:rerun-if-changed=build.rs");
    for file in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }

    let fds = protox::compile(PROTOS, [&root])?;
    // The descriptors themselves, for reading messages in protobuf text format (a SavedModel's
    // `saved_model.pbtxt`) through reflection.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("descriptors.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    prost_build::Config::new()
        // `bytes` fields stay `Vec<u8>` (the default); `google.protobuf.*`
        // maps to `prost_types` (also the default).
        .compile_fds(fds)?;
    Ok(())
}
