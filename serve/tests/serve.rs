//! `lathe serve` end to end on loopback: a server started in-process on free ports, called
//! over REST with raw HTTP/1.1 and over gRPC with the generated tonic clients. Outputs are
//! checked against TensorFlow's recorded ones; every bad request gets its status and a
//! message naming what was wrong, and the server keeps serving.
//! (Tests with the real Python clients are in `clients.rs`.)

use lathe_ir::Tensor;
use lathe_proto::inference as inf;
use lathe_proto::tensorflow::serving as tfsp;
use lathe_serve::grpc::generated::inference_service::g_r_p_c_inference_service_client::GRPCInferenceServiceClient;
use lathe_serve::grpc::generated::model_service::model_service_client::ModelServiceClient;
use lathe_serve::grpc::generated::prediction_service::prediction_service_client::PredictionServiceClient;
use lathe_serve::json::Json;
use lathe_serve::{BatchingConfig, Limits, ModelConfig, ServeConfig, VersionPolicy};
use lathe_tests::{compare, Fixture, TempDir};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A model repository `root/NAME/VERSION/model.pb` of fixtures.
fn repository(root: &Path, models: &[(&str, &str, i64)]) -> Vec<ModelConfig> {
    let mut configs: Vec<ModelConfig> = Vec::new();
    for (name, fixture, version) in models {
        let dir = root.join(name).join(version.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(Fixture::open(fixture).model_path(), dir.join("model.pb")).unwrap();
        if !configs.iter().any(|c| c.name == *name) {
            configs.push(ModelConfig {
                name: name.to_string(),
                base_path: root.join(name),
                version_policy: VersionPolicy::default(),
                version_labels: Default::default(),
            });
        }
    }
    configs
}

struct Running {
    server: lathe_serve::Server,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    fn rest(&self) -> std::net::SocketAddr {
        self.server.rest_addr
    }

    fn grpc_url(&self) -> String {
        format!("http://{}", self.server.grpc_addr)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.server.wait().await.unwrap();
    }
}

/// A server on free loopback ports, models polled every 100 ms, not yet waited for.
async fn launch(models: Vec<ModelConfig>, tweak: impl FnOnce(&mut ServeConfig)) -> Running {
    let mut config = ServeConfig {
        models,
        host: [127, 0, 0, 1].into(),
        grpc_port: 0,
        rest_port: 0,
        poll_interval: Duration::from_millis(100),
        limits: Limits {
            max_request_bytes: 1 << 20,
            ..Limits::default()
        },
        batching: None,
        threads: Some(1),
        backend: lathe_runtime::Backend::Cpu,
    };
    tweak(&mut config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = lathe_serve::Server::start(config, async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    Running { server, stop }
}

/// [`launch`], then wait until every model has a version available.
async fn start(models: Vec<ModelConfig>, tweak: impl FnOnce(&mut ServeConfig)) -> Running {
    let running = launch(models, tweak).await;
    let start = Instant::now();
    while !running.server.shared.ready() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "models did not load"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running
}

/// One HTTP/1.1 request; the status, headers (lowercase names) and body.
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
    {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}

async fn post_json(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, Json) {
    let (status, _, body) = http(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json".into())],
        body.as_bytes(),
    )
    .await;
    (
        status,
        Json::parse(&body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body))),
    )
}

async fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, Json) {
    let (status, _, body) = http(addr, "GET", path, &[], b"").await;
    (
        status,
        Json::parse(&body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body))),
    )
}

/// A tensor as nested JSON lists.
fn json_of(t: &Tensor) -> String {
    let mut s = String::new();
    lathe_serve::convert::write_json(&mut s, t, 0, t.shape());
    s
}

/// A JSON value as an f32 tensor.
fn tensor_of(v: &Json) -> Tensor {
    lathe_serve::convert::from_json("response", v, lathe_ir::DType::F32).unwrap()
}

fn error_of(v: &Json) -> String {
    v.get("error")
        .and_then(Json::as_str)
        .unwrap_or_else(|| panic!("no error in {}", v.to_text()))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tensorflow_serving_rest_predicts_in_both_formats_and_reports_status_and_metadata() {
    let dir = TempDir::new("serve-tfs-rest");
    let server = start(
        repository(
            dir.path(),
            &[("mlp", "mlp_tiny", 1), ("multi", "multi_io", 3)],
        ),
        |_| {},
    )
    .await;
    let addr = server.rest();
    let f = Fixture::open("mlp_tiny");
    let (x, want) = (&f.inputs()[0].1, &f.expected_outputs()[0]);

    // Row format: one instance per row of the batch.
    let (status, v) = post_json(
        addr,
        "/v1/models/mlp:predict",
        &format!("{{\"instances\": {}}}", json_of(x)),
    )
    .await;
    assert_eq!(status, 200, "{}", v.to_text());
    compare(
        &tensor_of(v.get("predictions").unwrap()),
        &want.1,
        want.0.tolerance(),
    )
    .unwrap();
    // Columnar format, the version named, the signature named.
    let body = format!(
        "{{\"signature_name\": \"serving_default\", \"inputs\": {{\"x\": {}}}}}",
        json_of(x)
    );
    let (status, v) = post_json(addr, "/v1/models/mlp/versions/1:predict", &body).await;
    assert_eq!(status, 200, "{}", v.to_text());
    compare(
        &tensor_of(v.get("outputs").unwrap()),
        &want.1,
        want.0.tolerance(),
    )
    .unwrap();

    // Two inputs and two outputs, named.
    let m = Fixture::open("multi_io");
    let ins = m.inputs();
    let body = format!(
        "{{\"inputs\": {{\"a\": {}, \"b\": {}}}}}",
        json_of(&ins[0].1),
        json_of(&ins[1].1)
    );
    let (status, v) = post_json(addr, "/v1/models/multi:predict", &body).await;
    assert_eq!(status, 200, "{}", v.to_text());
    for (meta, t) in m.expected_outputs() {
        let name = meta.name.as_str();
        let got = v
            .get("outputs")
            .unwrap()
            .get(name)
            .unwrap_or_else(|| panic!("no output {name} in {}", v.to_text()));
        compare(&tensor_of(got), &t, meta.tolerance()).unwrap();
    }

    // Status and metadata, in TensorFlow Serving's JSON.
    let (status, v) = get_json(addr, "/v1/models/mlp").await;
    assert_eq!(status, 200);
    assert_eq!(
        v.to_text(),
        r#"{"model_version_status":[{"version":"1","state":"AVAILABLE","status":{"error_code":"OK","error_message":""}}]}"#
    );
    let (status, v) = get_json(addr, "/v1/models/mlp/metadata").await;
    assert_eq!(status, 200);
    let sig = v
        .get("metadata")
        .and_then(|m| m.get("signature_def"))
        .and_then(|m| m.get("signature_def"))
        .and_then(|m| m.get("serving_default"))
        .unwrap();
    let x_info = sig.get("inputs").and_then(|i| i.get("x")).unwrap();
    assert_eq!(x_info.get("dtype"), Some(&Json::Str("DT_FLOAT".into())));
    assert_eq!(
        sig.get("method_name"),
        Some(&Json::Str("tensorflow/serving/predict".into()))
    );

    // Non-finite tokens go in and come out as TensorFlow Serving writes them.
    let mut row = vec!["0.5".to_string(); 16];
    row[3] = "NaN".into();
    let (status, v) = post_json(
        addr,
        "/v1/models/mlp:predict",
        &format!("{{\"instances\": [[{}]]}}", row.join(",")),
    )
    .await;
    assert_eq!(status, 200);
    assert!(v.to_text().contains("NaN"), "{}", v.to_text());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rest_requests_get_a_status_and_a_message_and_the_server_keeps_serving() {
    let dir = TempDir::new("serve-bad-rest");
    let server = start(repository(dir.path(), &[("mlp", "mlp_tiny", 1)]), |_| {}).await;
    let addr = server.rest();
    let row16 = format!("[{}]", vec!["1"; 16].join(","));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("/v1/models/mlp:predict", "{\"instances\": [1,".into(), 400, "malformed JSON at byte"),
        ("/v1/models/mlp:predict", "[]".into(), 400, "must be a JSON object"),
        ("/v1/models/nope:predict", format!("{{\"instances\": [{row16}]}}"), 404, "no model named `nope`"),
        ("/v1/models/mlp/versions/7:predict", format!("{{\"instances\": [{row16}]}}"), 404, "has no version 7"),
        ("/v1/models/mlp:predict", format!("{{\"signature_name\": \"other\", \"instances\": [{row16}]}}"), 404, "no signature `other`"),
        ("/v1/models/mlp:predict", format!("{{\"inputs\": {{\"y\": [{row16}]}}}}"), 400, "no input named `y`"),
        ("/v1/models/mlp:predict", "{\"instances\": [[1, 2, 3]]}".into(), 400, "has shape [1, 16], the request gives [1, 3]"),
        ("/v1/models/mlp:predict", "{\"instances\": [[1, 2], [3]]}".into(), 400, "not rectangular"),
        ("/v1/models/mlp:predict", "{\"instances\": [[\"a\"]]}".into(), 400, "is not a value of dtype f32"),
        ("/v1/models/mlp:predict", "{\"instances\": [{\"b64\": \"AAAA\"}]}".into(), 400, "base64"),
        ("/v1/models/mlp:predict", "{}".into(), 400, "neither `instances`"),
        ("/v1/models/mlp:explain", "{}".into(), 404, "not a verb"),
        ("/v2/models/mlp/infer", "{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [1, 16], \"data\": [1, 2]}]}".into(), 400, "has 16 elements, `data` holds 2"),
        ("/v2/models/mlp/infer", "{\"inputs\": [{\"name\": \"x\", \"datatype\": \"INT64\", \"shape\": [1, 16], \"data\": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}".into(), 400, "is f32, the request gives i64"),
        ("/v2/models/mlp/infer", "{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [100000000, 16], \"data\": []}]}".into(), 413, "larger than the server's limit"),
    ];
    for (path, body, want_status, want) in cases {
        let (status, v) = post_json(addr, path, &body).await;
        let e = error_of(&v);
        assert_eq!(status, want_status, "{path} {body}: {e}");
        assert!(e.contains(want), "{path} {body}: `{e}` lacks `{want}`");
    }
    // A body over the limit.
    let big = format!("{{\"instances\": [{}]}}", vec!["1.0"; 300_000].join(","));
    let (status, v) = post_json(addr, "/v1/models/mlp:predict", &big).await;
    assert_eq!(status, 413, "{}", v.to_text());
    // Still serving.
    let (status, _) = post_json(
        addr,
        "/v1/models/mlp:predict",
        &format!("{{\"instances\": [{row16}]}}"),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, text) = http(addr, "GET", "/monitoring/prometheus/metrics", &[], b"").await;
    let text = String::from_utf8(text).unwrap();
    assert_eq!(status, 200);
    assert!(
        text.contains(
            "lathe_requests_total{model=\"mlp\",api=\"tfs_rest_predict\",outcome=\"ok\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("outcome=\"invalid_argument\""), "{text}");
    assert!(
        text.contains("lathe_model_version_available{model=\"mlp\",version=\"1\"} 1"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kserve_v2_rest_serves_health_metadata_and_infer_in_json_and_binary() {
    let dir = TempDir::new("serve-v2-rest");
    let server = start(repository(dir.path(), &[("mlp", "mlp_tiny", 2)]), |_| {}).await;
    let addr = server.rest();
    assert_eq!(get_json(addr, "/v2/health/live").await.0, 200);
    assert_eq!(get_json(addr, "/v2/health/ready").await.0, 200);
    assert_eq!(get_json(addr, "/v2/models/mlp/ready").await.0, 200);
    let (status, v) = get_json(addr, "/v2/models/mlp").await;
    assert_eq!(status, 200);
    assert_eq!(v.get("versions").unwrap().to_text(), "[\"2\"]");
    assert_eq!(
        v.get("inputs").unwrap().to_text(),
        r#"[{"name":"x","datatype":"FP32","shape":[1,16]}]"#
    );

    let f = Fixture::open("mlp_tiny");
    let (x, want) = (&f.inputs()[0].1, &f.expected_outputs()[0]);
    let mut flat = String::new();
    lathe_serve::convert::write_json_flat(&mut flat, x);
    let body = format!("{{\"id\": \"r1\", \"inputs\": [{{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [1, 16], \"data\": {flat}}}]}}");
    let (status, v) = post_json(addr, "/v2/models/mlp/versions/2/infer", &body).await;
    assert_eq!(status, 200, "{}", v.to_text());
    assert_eq!(v.get("id"), Some(&Json::Str("r1".into())));
    let out = match v.get("outputs") {
        Some(Json::Arr(o)) => &o[0],
        _ => panic!("{}", v.to_text()),
    };
    let got =
        lathe_serve::convert::from_json("data", out.get("data").unwrap(), lathe_ir::DType::F32)
            .unwrap();
    let got = Tensor::from_le_bytes(lathe_ir::DType::F32, &[1, 10], &got.to_le_bytes()).unwrap();
    compare(&got, &want.1, want.0.tolerance()).unwrap();

    // Triton's binary extension: the input as raw bytes after the JSON, the output likewise.
    let header = "{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [1, 16], \"parameters\": {\"binary_data_size\": 64}}], \"outputs\": [{\"name\": \"Identity:0\", \"parameters\": {\"binary_data\": true}}]}";
    let name = server
        .server
        .shared
        .repo
        .get("mlp", &lathe_serve::repository::VersionChoice::Newest)
        .unwrap()
        .outputs[0]
        .name
        .clone();
    let header = header.replace("Identity:0", &name);
    let mut body = header.as_bytes().to_vec();
    body.extend_from_slice(&x.to_le_bytes());
    let (status, headers, reply) = http(
        addr,
        "POST",
        "/v2/models/mlp/infer",
        &[("Inference-Header-Content-Length", header.len().to_string())],
        &body,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    let n: usize = headers
        .iter()
        .find(|(k, _)| k == "inference-header-content-length")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let meta = Json::parse(&reply[..n]).unwrap();
    assert!(
        meta.to_text().contains("\"binary_data_size\":40"),
        "{}",
        meta.to_text()
    );
    let got = Tensor::from_le_bytes(lathe_ir::DType::F32, &[1, 10], &reply[n..]).unwrap();
    compare(&got, &want.1, want.0.tolerance()).unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_predict_metadata_status_and_kserve_infer_match_tensorflow() {
    let dir = TempDir::new("serve-grpc");
    let server = start(repository(dir.path(), &[("mlp", "mlp_tiny", 1)]), |_| {}).await;
    let f = Fixture::open("mlp_tiny");
    let (x, want) = (&f.inputs()[0].1, &f.expected_outputs()[0]);
    let spec = || {
        Some(tfsp::ModelSpec {
            name: "mlp".into(),
            ..Default::default()
        })
    };

    let mut predict = PredictionServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let req = tfsp::PredictRequest {
        model_spec: spec(),
        inputs: [(
            "x".to_string(),
            lathe_serve::convert::to_tensor_proto("x", x).unwrap(),
        )]
        .into_iter()
        .collect(),
        output_filter: vec![],
    };
    let r = predict.predict(req.clone()).await.unwrap().into_inner();
    assert_eq!(
        r.model_spec.as_ref().unwrap().version_choice,
        Some(tfsp::model_spec::VersionChoice::Version(1))
    );
    let (_, out) = r.outputs.iter().next().unwrap();
    let got = lathe_serve::convert::from_tensor_proto("out", out, 1 << 20).unwrap();
    compare(&got, &want.1, want.0.tolerance()).unwrap();

    // Errors are gRPC statuses naming the problem.
    let mut bad = req.clone();
    bad.model_spec.as_mut().unwrap().name = "nope".into();
    let e = predict.predict(bad).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    let mut bad = req.clone();
    bad.inputs.insert(
        "x".into(),
        lathe_serve::convert::to_tensor_proto("x", &Tensor::from_vec(&[2], vec![1i64, 2])).unwrap(),
    );
    let e = predict.predict(bad).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("is f32, the request gives i64"), "{e}");
    // A splat TensorProto of a huge shape is refused before memory is reserved.
    let mut bad = req.clone();
    let mut p = lathe_serve::convert::to_tensor_proto("x", x).unwrap();
    p.tensor_content.clear();
    p.float_val = vec![1.0];
    p.tensor_shape = Some(lathe_serve::convert::shape_proto([1 << 40, 16]));
    bad.inputs.insert("x".into(), p);
    let e = predict.predict(bad).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");

    let meta = predict
        .get_model_metadata(tfsp::GetModelMetadataRequest {
            model_spec: spec(),
            metadata_field: vec!["signature_def".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let any = &meta.metadata["signature_def"];
    assert_eq!(
        any.type_url,
        "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    );
    let map: tfsp::SignatureDefMap = prost::Message::decode(any.value.as_slice()).unwrap();
    assert_eq!(
        map.signature_def["serving_default"].inputs["x"].dtype,
        lathe_proto::tensorflow::DataType::DtFloat as i32
    );

    let mut status = ModelServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let s = status
        .get_model_status(tfsp::GetModelStatusRequest { model_spec: spec() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.model_version_status.len(), 1);
    assert_eq!(
        s.model_version_status[0].state,
        tfsp::model_version_status::State::Available as i32
    );

    let mut v2 = GRPCInferenceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    assert!(
        v2.server_live(inf::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        v2.server_ready(inf::ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        v2.model_ready(inf::ModelReadyRequest {
            name: "mlp".into(),
            version: String::new()
        })
        .await
        .unwrap()
        .into_inner()
        .ready
    );
    let md = v2
        .model_metadata(inf::ModelMetadataRequest {
            name: "mlp".into(),
            version: "1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            md.inputs[0].datatype.as_str(),
            md.inputs[0].shape.as_slice()
        ),
        ("FP32", &[1i64, 16][..])
    );
    let input =
        |contents: Option<inf::InferTensorContents>| inf::model_infer_request::InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![1, 16],
            contents,
            ..Default::default()
        };
    // Typed contents, then raw bytes: both answer in raw bytes.
    let typed = inf::InferTensorContents {
        fp32_contents: x.to_f64_vec().iter().map(|&v| v as f32).collect(),
        ..Default::default()
    };
    for (inputs, raw) in [
        (vec![input(Some(typed))], vec![]),
        (vec![input(None)], vec![x.to_le_bytes()]),
    ] {
        let r = v2
            .model_infer(inf::ModelInferRequest {
                model_name: "mlp".into(),
                id: "7".into(),
                inputs,
                raw_input_contents: raw,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.id.as_str(), r.model_version.as_str()), ("7", "1"));
        let got = Tensor::from_le_bytes(lathe_ir::DType::F32, &[1, 10], &r.raw_output_contents[0])
            .unwrap();
        compare(&got, &want.1, want.0.tolerance()).unwrap();
    }
    let e = v2
        .model_infer(inf::ModelInferRequest {
            model_name: "mlp".into(),
            inputs: vec![input(None)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("has no `contents`"), "{e}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_is_picked_up_and_the_old_one_unloaded_while_serving() {
    let dir = TempDir::new("serve-versions");
    let server = start(repository(dir.path(), &[("m", "mlp_tiny", 1)]), |_| {}).await;
    let addr = server.rest();
    let row16 = format!("{{\"instances\": [[{}]]}}", vec!["1"; 16].join(","));
    // Version 2 is a different model (dynamic batch, [?, 6]): which one answers is visible.
    let staging = dir.join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::copy(
        Fixture::open("dynamic_batch").model_path(),
        staging.join("model.pb"),
    )
    .unwrap();
    std::fs::rename(&staging, dir.join("m").join("2")).unwrap();
    let start = Instant::now();
    loop {
        let (_, v) = get_json(addr, "/v1/models/m").await;
        if v.to_text().contains(r#"{"version":"1","state":"END""#)
            && v.to_text()
                .contains(r#"{"version":"2","state":"AVAILABLE""#)
        {
            break;
        }
        // Until then, every call is answered by one version or the other.
        let (status, _) = post_json(addr, "/v1/models/m:predict", &row16).await;
        assert!(status == 200 || status == 400);
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "version 2 was not picked up: {}",
            v.to_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, v) = post_json(
        addr,
        "/v1/models/m:predict",
        "{\"instances\": [[1,2,3,4,5,6],[1,2,3,4,5,6]]}",
    )
    .await;
    assert_eq!(status, 200, "{}", v.to_text());
    let (status, _) = post_json(addr, "/v1/models/m/versions/1:predict", &row16).await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_calls_answer_each_caller_with_its_own_rows() {
    let dir = TempDir::new("serve-batching");
    let server = start(repository(dir.path(), &[("d", "dynamic_batch", 1)]), |c| {
        c.batching = Some(BatchingConfig {
            max_batch_size: 16,
            batch_timeout: Duration::from_millis(20),
        });
    })
    .await;
    assert!(server
        .server
        .shared
        .repo
        .get("d", &lathe_serve::repository::VersionChoice::Newest)
        .unwrap()
        .batching());
    let f = Fixture::open("dynamic_batch");
    let x = f.inputs()[0].1.clone();
    let want = f.expected_outputs();
    let addr = server.rest();
    // Each caller sends one of the fixture's rows (x has 3), some twice; every answer must
    // be that row's output.
    let calls = (0..12).map(|k| {
        let row = k % 3;
        let xr = Tensor::from_le_bytes(
            lathe_ir::DType::F32,
            &[1, 6],
            &x.to_le_bytes()[row * 24..(row + 1) * 24],
        )
        .unwrap();
        let body = format!("{{\"instances\": {}}}", json_of(&xr));
        async move { (row, post_json(addr, "/v1/models/d:predict", &body).await) }
    });
    let answers = futures_join(calls.collect()).await;
    for (row, (status, v)) in answers {
        assert_eq!(status, 200, "{}", v.to_text());
        let p = match v.get("predictions") {
            Some(Json::Arr(p)) => &p[0],
            _ => panic!("{}", v.to_text()),
        };
        let (m0, t0) = &want[0];
        let got = tensor_of(p.get(&m0.name).unwrap_or_else(|| panic!("{}", v.to_text())));
        let want_row = Tensor::from_le_bytes(
            lathe_ir::DType::F32,
            &[8],
            &t0.to_le_bytes()[row * 32..(row + 1) * 32],
        )
        .unwrap();
        compare(&got, &want_row, m0.tolerance()).unwrap();
    }
    // The calls were joined: fewer batches than calls, every row counted once.
    let servable = (server.server.shared.repo)
        .get("d", &lathe_serve::repository::VersionChoice::Newest)
        .unwrap();
    let stats = servable.batch_stats().unwrap();
    let batches = stats.batches.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(stats.rows.load(std::sync::atomic::Ordering::Relaxed), 12);
    assert!(batches < 12, "12 calls ran as {batches} batches");
    server.stop().await;
}

/// Runs futures concurrently on the runtime and collects their results in order.
async fn futures_join<F: std::future::Future + Send + 'static>(fs: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send,
{
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_config_file_serves_several_models_with_labels_and_policies() {
    let dir = TempDir::new("serve-config-file");
    repository(
        dir.path(),
        &[
            ("a", "mlp_tiny", 1),
            ("a", "mlp_tiny", 2),
            ("a", "mlp_tiny", 3),
            ("b", "multi_io", 5),
        ],
    );
    let file = dir.join("models.config");
    std::fs::write(
        &file,
        "model_config_list {\n  config { name: 'a' base_path: 'a' model_platform: 'tensorflow'\n    model_version_policy { specific { versions: 1 versions: 3 } }\n    version_labels { key: 'stable' value: 1 }\n    version_labels { key: 'canary' value: 3 } }\n  config { name: \"b\" base_path: \"b\" }\n}\n",
    )
    .unwrap();
    let models = lathe_serve::config::read_model_config_file(&file).unwrap();
    assert_eq!(
        models[0].version_policy,
        VersionPolicy::Specific(vec![1, 3])
    );
    let server = start(models, |_| {}).await;
    let addr = server.rest();
    let (_, v) = get_json(addr, "/v1/models/a").await;
    assert!(
        v.to_text().contains(r#""version":"1","state":"AVAILABLE""#)
            && v.to_text().contains(r#""version":"3","state":"AVAILABLE""#)
            && !v.to_text().contains(r#""version":"2""#),
        "{}",
        v.to_text()
    );
    let (status, v) = get_json(addr, "/v1/models/a/labels/canary").await;
    assert_eq!(status, 200);
    assert!(
        v.to_text().contains(r#""version":"3""#) && !v.to_text().contains(r#""version":"1""#),
        "{}",
        v.to_text()
    );
    let row16 = format!("{{\"instances\": [[{}]]}}", vec!["1"; 16].join(","));
    assert_eq!(
        post_json(addr, "/v1/models/a/labels/stable:predict", &row16)
            .await
            .0,
        200
    );
    assert_eq!(
        post_json(addr, "/v1/models/a/labels/beta:predict", &row16)
            .await
            .0,
        404
    );
    assert_eq!(get_json(addr, "/v1/models/b").await.0, 200);
    server.stop().await;

    let bad = dir.join("bad.config");
    std::fs::write(
        &bad,
        "model_config_list { config { name: 'a' base_path: 'a' logging_config {} } }",
    )
    .unwrap();
    let e = lathe_serve::config::read_model_config_file(&bad).unwrap_err();
    assert!(
        e.contains("bad.config") && e.contains("logging_config"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_fails_to_load_is_reported_and_the_server_not_ready() {
    let dir = TempDir::new("serve-broken");
    let v1 = dir.join("m").join("1");
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::write(v1.join("model.pb"), b"not a graph").unwrap();
    let models = vec![ModelConfig {
        name: "m".into(),
        base_path: dir.join("m"),
        version_policy: VersionPolicy::default(),
        version_labels: Default::default(),
    }];
    let server = launch(models, |c| c.poll_interval = Duration::from_millis(50)).await;
    let addr = server.rest();
    let start = Instant::now();
    loop {
        let (_, v) = get_json(addr, "/v1/models/m").await;
        if v.to_text().contains("model.pb") {
            assert!(v.to_text().contains(r#""state":"END""#), "{}", v.to_text());
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{}", v.to_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get_json(addr, "/v2/health/ready").await.0, 503);
    let (status, v) = post_json(addr, "/v1/models/m:predict", "{\"instances\": [1]}").await;
    assert_eq!(status, 503, "{}", v.to_text());
    assert!(error_of(&v).contains("failed to load"), "{}", v.to_text());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_requests_are_replayed_on_load_and_a_bad_one_fails_the_load() {
    use lathe_proto::tensorflow::serving::{prediction_log, PredictLog, PredictionLog};
    let record = |rows: usize, input: &str| {
        let x = Tensor::from_vec(&[rows, 6], vec![0.5f32; rows * 6]);
        let log = PredictionLog {
            log_type: Some(prediction_log::LogType::PredictLog(PredictLog {
                request: Some(tfsp::PredictRequest {
                    model_spec: Some(tfsp::ModelSpec {
                        name: "m".into(),
                        ..Default::default()
                    }),
                    inputs: [(
                        input.to_string(),
                        lathe_serve::convert::to_tensor_proto("x", &x).unwrap(),
                    )]
                    .into_iter()
                    .collect(),
                    output_filter: vec![],
                }),
                response: None,
            })),
        };
        prost::Message::encode_to_vec(&log)
    };
    let dir = TempDir::new("serve-warmup");
    let configs = repository(dir.path(), &[("m", "dynamic_batch", 1)]);
    let assets = dir.join("m").join("1").join("assets.extra");
    std::fs::create_dir_all(&assets).unwrap();
    let file = assets.join("tf_serving_warmup_requests");
    std::fs::write(
        &file,
        lathe_serve::warmup::write_records(&[record(4, "x"), record(7, "x")]),
    )
    .unwrap();
    let server = start(configs.clone(), |_| {}).await;
    let s = server
        .server
        .shared
        .repo
        .get("m", &lathe_serve::repository::VersionChoice::Newest)
        .unwrap();
    let warmed: Vec<String> = s
        .model()
        .cached_signatures()
        .iter()
        .map(|sig| sig.to_string())
        .collect();
    assert!(
        warmed.iter().any(|w| w.contains("f32[4,6]"))
            && warmed.iter().any(|w| w.contains("f32[7,6]")),
        "{warmed:?}"
    );
    server.stop().await;

    // A record naming an input the model lacks fails the load, naming the file and record.
    std::fs::write(
        &file,
        lathe_serve::warmup::write_records(&[record(2, "x"), record(2, "nope")]),
    )
    .unwrap();
    let server = launch(configs, |_| {}).await;
    let start = Instant::now();
    let error = loop {
        let states = server.server.shared.repo.states("m").unwrap();
        if let Some((_, lathe_serve::repository::VersionState::Failed { error, .. })) =
            states.first()
        {
            break error.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{states:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        error.contains("tf_serving_warmup_requests")
            && error.contains("record 1")
            && error.contains("`nope`"),
        "{error}"
    );
    server.stop().await;
}

/// Copies a directory tree.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_and_regress_read_tf_examples_where_the_signature_fits() {
    let dir = TempDir::new("serve-classify");
    let saved = lathe_tests::fixtures_root()
        .join("..")
        .join("tf_saved")
        .join("keras_saved");
    copy_dir(&saved.join("saved_model"), &dir.join("k").join("1"));
    let models = vec![ModelConfig {
        name: "k".into(),
        base_path: dir.join("k"),
        version_policy: VersionPolicy::default(),
        version_labels: Default::default(),
    }];
    let server = start(models, |_| {}).await;
    let x = lathe_tests::read_npy(&saved.join("serving_default.features.npy"));
    let want = lathe_tests::read_npy(&saved.join("serving_default.logits.npy"));
    let (n, k) = (x.shape()[0], want.shape()[1]);
    let xs = x.to_f64_vec();
    let tol = lathe_tests::Tolerance {
        rtol: 1e-4,
        atol: 1e-5,
    };

    // REST: each example's `features` feature is one row of the model's input.
    let examples: Vec<String> = (0..n)
        .map(|i| {
            let row: Vec<String> = xs[i * 10..(i + 1) * 10]
                .iter()
                .map(|v| format!("{v:?}"))
                .collect();
            format!("{{\"features\": [{}]}}", row.join(","))
        })
        .collect();
    let body = format!("{{\"examples\": [{}]}}", examples.join(","));
    let (status, v) = post_json(server.rest(), "/v1/models/k:classify", &body).await;
    assert_eq!(status, 200, "{}", v.to_text());
    let Some(Json::Arr(results)) = v.get("results") else {
        panic!("{}", v.to_text())
    };
    let scores: Vec<f32> = results
        .iter()
        .flat_map(|r| match r {
            Json::Arr(classes) => classes
                .iter()
                .map(|c| match c {
                    Json::Arr(pair) => match pair[1] {
                        Json::Num(n) => n.as_f64() as f32,
                        _ => panic!(),
                    },
                    _ => panic!(),
                })
                .collect::<Vec<_>>(),
            _ => panic!(),
        })
        .collect();
    compare(&Tensor::from_vec(&[n, k], scores), &want, tol).unwrap();
    let (status, v) = post_json(server.rest(), "/v1/models/k:regress", &body).await;
    assert_eq!(status, 400);
    assert!(
        error_of(&v).contains("does not fit Regress"),
        "{}",
        v.to_text()
    );
    let (status, v) = post_json(
        server.rest(),
        "/v1/models/k:classify",
        "{\"examples\": [{\"features\": [1, 2]}]}",
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        error_of(&v).contains("has 2 values; input `features` takes 10"),
        "{}",
        v.to_text()
    );

    // gRPC Classify, the rows given through the context where the examples have none.
    use lathe_proto::tensorflow::{feature, Example, Feature, Features, FloatList};
    let example = |row: &[f64]| Example {
        features: Some(Features {
            feature: [(
                "features".to_string(),
                Feature {
                    kind: Some(feature::Kind::FloatList(FloatList {
                        value: row.iter().map(|&v| v as f32).collect(),
                    })),
                },
            )]
            .into_iter()
            .collect(),
        }),
    };
    let mut client = PredictionServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let req = tfsp::ClassificationRequest {
        model_spec: Some(tfsp::ModelSpec {
            name: "k".into(),
            ..Default::default()
        }),
        input: Some(tfsp::Input {
            kind: Some(tfsp::input::Kind::ExampleListWithContext(
                tfsp::ExampleListWithContext {
                    examples: vec![Example::default()],
                    context: Some(example(&xs[..10])),
                },
            )),
        }),
    };
    let r = client.classify(req).await.unwrap().into_inner();
    let got: Vec<f32> = r.result.unwrap().classifications[0]
        .classes
        .iter()
        .map(|c| c.score)
        .collect();
    let first =
        Tensor::from_le_bytes(lathe_ir::DType::F32, &[1, k], &want.to_le_bytes()[..4 * k]).unwrap();
    compare(&Tensor::from_vec(&[1, k], got), &first, tol).unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_past_the_queue_limit_or_the_timeout_are_refused_and_the_rest_answered() {
    let dir = TempDir::new("serve-limits");
    let f = Fixture::open("resnet_tiny");
    let body = format!("{{\"instances\": {}}}", json_of(&f.inputs()[0].1));
    // One call at a time and none waiting: of calls sent together, some are refused with 429.
    let server = start(repository(dir.path(), &[("r", "resnet_tiny", 1)]), |c| {
        c.limits.max_concurrent_runs = 1;
        c.limits.max_queued = 0;
    })
    .await;
    let addr = server.rest();
    let calls = (0..16).map(|_| {
        let body = body.clone();
        async move { post_json(addr, "/v1/models/r:predict", &body).await }
    });
    let answers = futures_join(calls.collect()).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<&Json> = answers
        .iter()
        .filter(|(s, _)| *s == 429)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        ok + refused.len(),
        16,
        "{:?}",
        answers.iter().map(|(s, _)| s).collect::<Vec<_>>()
    );
    assert!(
        ok >= 1 && !refused.is_empty(),
        "{ok} answered, {} refused",
        refused.len()
    );
    assert!(
        error_of(refused[0]).contains("0 calls waiting to run, the server's limit"),
        "{}",
        refused[0].to_text()
    );
    server.stop().await;

    // One call at a time, a 1 ms timeout and 32 calls at once: those still waiting for their
    // turn when it passes get 504, naming the timeout; the others are answered.
    let server = start(repository(dir.path(), &[("r", "resnet_tiny", 1)]), |c| {
        c.limits.max_concurrent_runs = 1;
        c.limits.request_timeout = Duration::from_millis(1);
    })
    .await;
    let addr = server.rest();
    let calls = (0..32).map(|_| {
        let body = body.clone();
        async move { post_json(addr, "/v1/models/r:predict", &body).await }
    });
    let answers = futures_join(calls.collect()).await;
    let late: Vec<&Json> = answers
        .iter()
        .filter(|(s, _)| *s == 504)
        .map(|(_, v)| v)
        .collect();
    assert!(answers.iter().all(|(s, _)| *s == 200 || *s == 504));
    assert!(!late.is_empty(), "no call timed out");
    assert!(
        error_of(late[0]).contains("did not answer within the server's timeout of 1ms"),
        "{}",
        late[0].to_text()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_option_reaches_the_models() {
    // The interpreter serves the model's answer; the CUDA backend either serves it too (a
    // build with the `cuda` feature on a machine with a GPU) or the version fails to load
    // saying why (no such backend in this build, or no device).
    let dir = TempDir::new("serve-backend");
    let row16 = format!("{{\"instances\": [[{}]]}}", vec!["1"; 16].join(","));
    let interp = start(repository(dir.path(), &[("m", "mlp_tiny", 1)]), |c| {
        c.backend = lathe_runtime::Backend::Interp
    })
    .await;
    let (status, v) = post_json(interp.rest(), "/v1/models/m:predict", &row16).await;
    assert_eq!(status, 200, "{}", v.to_text());
    interp.stop().await;
    let cuda = launch(repository(dir.path(), &[("m", "mlp_tiny", 1)]), |c| {
        c.backend = lathe_runtime::Backend::Cuda
    })
    .await;
    let start = Instant::now();
    loop {
        let (_, v) = get_json(cuda.rest(), "/v1/models/m").await;
        let text = v.to_text();
        if text.contains(r#""state":"AVAILABLE""#) {
            let (status, v) = post_json(cuda.rest(), "/v1/models/m:predict", &row16).await;
            assert_eq!(status, 200, "{}", v.to_text());
            break;
        }
        if text.contains(r#""state":"END""#) {
            assert!(
                text.contains("no cuda backend") || text.contains("CUDA"),
                "{text}"
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cuda.stop().await;
}
