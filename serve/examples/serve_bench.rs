//! The serving figures: what `lathe serve` adds to a model's own latency, and what dynamic
//! batching does to throughput under concurrent clients.
//!
//! ```sh
//! cargo run --release -p lathe-serve --example serve_bench -- BASE_PATH INPUT.npy [SECONDS]
//! ```
//!
//! `BASE_PATH` holds the model's versions (`BASE_PATH/1/...`); `INPUT.npy` is one call's input
//! (batch 1, the model's only input). Prints, as medians over sequential calls: the model run
//! in-process (`Model::run`), TensorFlow Serving REST Predict and gRPC Predict over loopback
//! (one keep-alive connection); then calls per second from 16 concurrent REST clients for
//! `SECONDS` (default 10) with batching off and on.

use lathe_ir::Tensor;
use lathe_proto::tensorflow::serving as tfsp;
use lathe_serve::grpc::generated::inference_service::g_r_p_c_inference_service_client::GRPCInferenceServiceClient;
use lathe_serve::grpc::generated::prediction_service::prediction_service_client::PredictionServiceClient;
use lathe_serve::{BatchingConfig, ModelConfig, ServeConfig, VersionPolicy};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const CALLS: usize = 3000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// An HTTP/1.1 keep-alive connection that POSTs one body and reads each response whole.
struct Conn {
    stream: BufReader<tokio::net::TcpStream>,
    request: Vec<u8>,
}

impl Conn {
    async fn open(addr: std::net::SocketAddr, path: &str, body: &str) -> Conn {
        let stream = BufReader::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        stream.get_ref().set_nodelay(true).unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        Conn { stream, request }
    }

    /// One call; whether it answered 200.
    async fn call(&mut self) -> bool {
        self.stream
            .get_mut()
            .write_all(&self.request)
            .await
            .unwrap();
        let mut line = String::new();
        self.stream.read_line(&mut line).await.unwrap();
        let ok = line.split(' ').nth(1) == Some("200");
        let mut length = 0;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.unwrap();
        ok
    }
}

async fn serve(
    base: &std::path::Path,
    batching: Option<BatchingConfig>,
    threads: Option<usize>,
) -> (lathe_serve::Server, tokio::sync::oneshot::Sender<()>) {
    let config = ServeConfig {
        models: vec![ModelConfig {
            name: "m".into(),
            base_path: base.to_path_buf(),
            version_policy: VersionPolicy::default(),
            version_labels: Default::default(),
        }],
        host: [127, 0, 0, 1].into(),
        grpc_port: 0,
        rest_port: 0,
        poll_interval: Duration::ZERO,
        batching,
        threads,
        ..ServeConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = lathe_serve::Server::start(config, async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    while !server.shared.ready() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (server, stop)
}

/// Calls per second from `clients` concurrent connections for `seconds`, and failed calls.
async fn throughput(
    addr: std::net::SocketAddr,
    body: &str,
    clients: usize,
    seconds: u64,
) -> (f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (done, failed, body) = (done.clone(), failed.clone(), body.to_string());
            tokio::spawn(async move {
                let mut c = Conn::open(addr, "/v1/models/m:predict", &body).await;
                while Instant::now() < end {
                    if c.call().await {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (
        done.load(Ordering::Relaxed) as f64 / seconds as f64,
        failed.load(Ordering::Relaxed),
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (base, input) = (PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    let seconds: u64 = args.get(3).map_or(10, |s| s.parse().unwrap());
    let threads: Option<usize> = args.get(4).map(|s| s.parse().unwrap());
    let x: Tensor = lathe_runtime::npy::read_file(&input).unwrap();

    let (server, stop) = serve(&base, None, threads).await;
    let servable = server
        .shared
        .repo
        .get("m", &lathe_serve::repository::VersionChoice::Newest)
        .unwrap();
    let name = servable.inputs[0].name.clone();
    let inputs = vec![(name.clone(), x.clone())];

    let mut body = String::from("{\"instances\": ");
    lathe_serve::convert::write_json(&mut body, &x, 0, x.shape());
    body.push('}');
    let mut rest_conn = Conn::open(server.rest_addr, "/v1/models/m:predict", &body).await;
    let mut live = Conn::open(server.rest_addr, "/v2/health/live", "").await;
    live.request = b"GET /v2/health/live HTTP/1.1\r\nHost: bench\r\n\r\n".to_vec();
    let endpoint = format!("http://{}", server.grpc_addr);
    let mut predict = PredictionServiceClient::connect(endpoint.clone())
        .await
        .unwrap();
    let mut kserve = GRPCInferenceServiceClient::connect(endpoint).await.unwrap();
    let req = tfsp::PredictRequest {
        model_spec: Some(tfsp::ModelSpec {
            name: "m".into(),
            ..Default::default()
        }),
        inputs: [(
            name,
            lathe_serve::convert::to_tensor_proto("x", &x).unwrap(),
        )]
        .into_iter()
        .collect(),
        output_filter: vec![],
    };

    // Each round times one of each, so that all see the same machine (it is shared and its
    // speed drifts): the model alone (`Model::run` on this thread), REST and gRPC Predict, and
    // a REST and a gRPC call that run nothing.
    let mut times: [Vec<f64>; 5] = Default::default();
    let micros = |t: Instant| t.elapsed().as_secs_f64() * 1e6;
    for _ in 0..CALLS {
        let t = Instant::now();
        servable.run_now(inputs.clone()).unwrap();
        times[0].push(micros(t));
        let t = Instant::now();
        assert!(rest_conn.call().await);
        times[1].push(micros(t));
        let t = Instant::now();
        predict.predict(req.clone()).await.unwrap();
        times[2].push(micros(t));
        let t = Instant::now();
        assert!(live.call().await);
        times[3].push(micros(t));
        let t = Instant::now();
        kserve
            .server_live(lathe_proto::inference::ServerLiveRequest {})
            .await
            .unwrap();
        times[4].push(micros(t));
    }
    let [own, rest, grpc, rest_ping, grpc_ping] = times.map(median);
    println!("median of {CALLS} interleaved rounds, microseconds:");
    println!("  model run in-process      {own:8.1}");
    println!(
        "  REST Predict (loopback)   {rest:8.1}   adds {:.1}",
        rest - own
    );
    println!(
        "  gRPC Predict (loopback)   {grpc:8.1}   adds {:.1}",
        grpc - own
    );
    println!("  REST call running nothing {rest_ping:8.1}");
    println!("  gRPC call running nothing {grpc_ping:8.1}");

    let (plain, plain_failed) = throughput(server.rest_addr, &body, 16, seconds).await;
    let _ = stop.send(());
    server.wait().await.unwrap();
    let batching = BatchingConfig {
        max_batch_size: 16,
        batch_timeout: Duration::from_micros(500),
    };
    let (server, stop) = serve(&base, Some(batching), threads).await;
    let (batched, batched_failed) = throughput(server.rest_addr, &body, 16, seconds).await;
    let mean_batch = {
        let s = (server.shared.repo)
            .get("m", &lathe_serve::repository::VersionChoice::Newest)
            .unwrap();
        let b = s.batch_stats().unwrap();
        b.rows.load(Ordering::Relaxed) as f64 / b.batches.load(Ordering::Relaxed).max(1) as f64
    };
    let _ = stop.send(());
    server.wait().await.unwrap();
    println!("16 concurrent REST clients for {seconds} s, calls per second:");
    println!("  batching off   {plain:9.0}   ({plain_failed} failed)");
    println!(
        "  batching on    {batched:9.0}   ({batched_failed} failed)   {:.2}x, {mean_batch:.1} rows a batch",
        batched / plain
    );
}
