//! Declares the gRPC services `lathe serve` answers, over the protobuf messages of `lathe-proto`
//! (TensorFlow Serving's and the Open Inference Protocol's, written there as `.proto` files and
//! compiled by prost). tonic generates a server trait and a client for each service into
//! `OUT_DIR`, as `<package>.<Service>.rs`; `src/grpc/mod.rs` includes them.

use tonic_prost_build::manual::{Builder, Method, Service};

/// One service: its protobuf package and name, and per method its name and the messages it
/// takes and returns (paths under `lathe_proto`).
struct Decl {
    package: &'static str,
    name: &'static str,
    methods: &'static [(&'static str, &'static str, &'static str)],
}

const SERVICES: &[Decl] = &[
    Decl {
        package: "tensorflow.serving",
        name: "PredictionService",
        methods: &[
            (
                "Classify",
                "tensorflow::serving::ClassificationRequest",
                "tensorflow::serving::ClassificationResponse",
            ),
            (
                "Regress",
                "tensorflow::serving::RegressionRequest",
                "tensorflow::serving::RegressionResponse",
            ),
            (
                "Predict",
                "tensorflow::serving::PredictRequest",
                "tensorflow::serving::PredictResponse",
            ),
            (
                "GetModelMetadata",
                "tensorflow::serving::GetModelMetadataRequest",
                "tensorflow::serving::GetModelMetadataResponse",
            ),
        ],
    },
    Decl {
        package: "tensorflow.serving",
        name: "ModelService",
        methods: &[(
            "GetModelStatus",
            "tensorflow::serving::GetModelStatusRequest",
            "tensorflow::serving::GetModelStatusResponse",
        )],
    },
    Decl {
        package: "inference",
        name: "GRPCInferenceService",
        methods: &[
            (
                "ServerLive",
                "inference::ServerLiveRequest",
                "inference::ServerLiveResponse",
            ),
            (
                "ServerReady",
                "inference::ServerReadyRequest",
                "inference::ServerReadyResponse",
            ),
            (
                "ModelReady",
                "inference::ModelReadyRequest",
                "inference::ModelReadyResponse",
            ),
            (
                "ServerMetadata",
                "inference::ServerMetadataRequest",
                "inference::ServerMetadataResponse",
            ),
            (
                "ModelMetadata",
                "inference::ModelMetadataRequest",
                "inference::ModelMetadataResponse",
            ),
            (
                "ModelInfer",
                "inference::ModelInferRequest",
                "inference::ModelInferResponse",
            ),
        ],
    },
];

/// `GetModelStatus` -> `get_model_status`.
fn snake(route: &str) -> String {
    let mut out = String::new();
    for (i, c) in route.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let services: Vec<Service> = SERVICES
        .iter()
        .map(|d| {
            let mut service = Service::builder().name(d.name).package(d.package);
            for (route, input, output) in d.methods {
                service = service.method(
                    Method::builder()
                        .name(snake(route))
                        .route_name(*route)
                        .input_type(format!("::lathe_proto::{input}"))
                        .output_type(format!("::lathe_proto::{output}"))
                        .codec_path("::tonic_prost::ProstCodec")
                        .build(),
                );
            }
            service.build()
        })
        .collect();
    Builder::new().compile(&services);
}
