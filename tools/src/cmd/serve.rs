//! `lathe serve`: serves models over TensorFlow Serving's REST and gRPC APIs and the Open
//! Inference Protocol (KServe v2), with TensorFlow Serving's flag names, so that a deployment
//! of `tensorflow_model_server` can switch its command and keep its flags.

use anyhow::{bail, Result};
use clap::Args;
use lathe_serve::{BatchingConfig, Limits, ModelConfig, ServeConfig, VersionPolicy};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The name clients call the model by (with --model_base_path)
    #[arg(long = "model_name", value_name = "NAME", default_value = "default")]
    model_name: String,
    /// A directory of numbered versions (DIR/1/, DIR/2/, ...), each holding a SavedModel, or one `.onnx`, frozen `.pb`, `.lir` or `.lathe`
    #[arg(long = "model_base_path", value_name = "DIR")]
    model_base_path: Option<PathBuf>,
    /// TensorFlow Serving's model config file (text format `model_config_list`), for several models, version policies and labels
    #[arg(
        long = "model_config_file",
        value_name = "FILE",
        conflicts_with = "model_base_path"
    )]
    model_config_file: Option<PathBuf>,
    /// gRPC port (TensorFlow Serving's PredictionService and ModelService, KServe v2's GRPCInferenceService); 0 picks one
    #[arg(long, default_value_t = 8500)]
    port: u16,
    /// REST port (`/v1/models/...`, `/v2/...`, `/monitoring/prometheus/metrics`); 0 picks one
    #[arg(long = "rest_api_port", default_value_t = 8501)]
    rest_api_port: u16,
    /// The address to listen on
    #[arg(long, default_value = "0.0.0.0")]
    host: std::net::IpAddr,
    /// How often base paths are scanned for new versions, in seconds; 0 scans once
    #[arg(long = "file_system_poll_wait_seconds", default_value_t = 1)]
    file_system_poll_wait_seconds: u64,
    /// Batch calls that arrive together (along axis 0) for models with a batch dimension
    #[arg(long = "enable_batching")]
    enable_batching: bool,
    /// With --enable_batching: the most rows in one batch
    #[arg(long = "max_batch_size", default_value_t = 32)]
    max_batch_size: usize,
    /// With --enable_batching: how long a batch waits for more calls, in microseconds
    #[arg(long = "batch_timeout_micros", default_value_t = 1000)]
    batch_timeout_micros: u64,
    /// The longest a request may take, queueing included, in milliseconds
    #[arg(long = "rest_api_timeout_in_ms", default_value_t = 30_000)]
    timeout_ms: u64,
    /// The largest request body or gRPC message, in bytes
    #[arg(long = "max_request_bytes", default_value_t = 64 << 20)]
    max_request_bytes: usize,
    /// Calls of one model version running at once [default: one per core]
    #[arg(long = "max_concurrent_runs")]
    max_concurrent_runs: Option<usize>,
    /// Calls of one model version waiting to run before more are refused
    #[arg(long = "max_queued", default_value_t = 256)]
    max_queued: usize,
    /// Threads each model's kernels may use [default: one per core]
    #[arg(long)]
    threads: Option<usize>,
    /// Where the models run: `cpu` (native code), `interp` (the reference interpreter) or `cuda` (an NVIDIA GPU; builds with the `cuda` feature)
    #[arg(long, default_value = "cpu")]
    backend: lathe_runtime::Backend,
}

pub fn run(a: ServeArgs) -> Result<()> {
    let models = match (&a.model_config_file, &a.model_base_path) {
        (Some(file), _) => {
            lathe_serve::config::read_model_config_file(file).map_err(anyhow::Error::msg)?
        }
        (None, Some(base)) => {
            if !base.is_dir() {
                bail!("--model_base_path `{}` is not a directory", base.display());
            }
            vec![ModelConfig {
                name: a.model_name.clone(),
                base_path: base.clone(),
                version_policy: VersionPolicy::default(),
                version_labels: Default::default(),
            }]
        }
        (None, None) => {
            bail!("give --model_base_path DIR (and --model_name NAME), or --model_config_file FILE")
        }
    };
    let defaults = Limits::default();
    let config = ServeConfig {
        models,
        host: a.host,
        grpc_port: a.port,
        rest_port: a.rest_api_port,
        poll_interval: Duration::from_secs(a.file_system_poll_wait_seconds),
        limits: Limits {
            max_request_bytes: a.max_request_bytes,
            request_timeout: Duration::from_millis(a.timeout_ms),
            max_concurrent_runs: a
                .max_concurrent_runs
                .unwrap_or(defaults.max_concurrent_runs)
                .max(1),
            max_queued: a.max_queued,
        },
        batching: a.enable_batching.then(|| BatchingConfig {
            max_batch_size: a.max_batch_size.max(1),
            batch_timeout: Duration::from_micros(a.batch_timeout_micros),
        }),
        threads: a.threads,
        backend: a.backend,
    };
    lathe_serve::run(config).map_err(anyhow::Error::msg)
}
