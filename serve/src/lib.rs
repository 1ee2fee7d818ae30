//! `lathe serve`: any model Lathe loads, served through TensorFlow Serving's REST and gRPC
//! APIs and the Open Inference Protocol (KServe v2), so that their existing clients and
//! orchestrators work unchanged.
//!
//! - [`config`]: what is served and the limits requests are held to.
//! - [`repository`]: the models' versions under their base paths, loaded per version policy,
//!   new versions picked up while serving and old ones drained.
//! - [`servable`]: one loaded version, its signature, and the gate its calls pass.
//! - [`batching`]: dynamic batching of calls along axis 0.
//! - [`tfs`] and [`kserve`]: each protocol's logic, shared by its REST form ([`rest`]) and
//!   its gRPC form ([`grpc`]); [`convert`] and [`json`]: tensors on the wire.
//! - [`warmup`]: TensorFlow Serving's warm-up requests, replayed on load.
//! - [`metrics`]: Prometheus metrics.
//!
//! [`Server::start`] binds both ports and serves until its shutdown signal; [`run`] is the
//! command line's entry, which stops on SIGTERM or Ctrl-C once in-flight requests finish.

pub mod batching;
pub mod config;
pub mod convert;
pub mod error;
pub mod grpc;
pub mod json;
pub mod kserve;
pub mod metrics;
pub mod placement;
pub mod repository;
pub mod rest;
pub mod servable;
pub mod tfs;
pub mod warmup;

pub use config::{BatchingConfig, Limits, ModelConfig, ServeConfig, VersionPolicy};
pub use error::ServeError;

use error::Result;
use metrics::Metrics;
use repository::Repository;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// What every request handler shares.
pub struct Shared {
    pub repo: Arc<Repository>,
    pub metrics: Metrics,
    /// False once shutdown has begun (readiness turns false so traffic drains away).
    serving: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Whether the server is ready: every model has a version available, and it is not
    /// shutting down.
    pub fn ready(&self) -> bool {
        self.serving.load(std::sync::atomic::Ordering::Relaxed) && self.repo.ready()
    }

    /// Runs one request's work in a span, counting it in the metrics.
    pub async fn observe<T>(
        &self,
        model: &str,
        api: &'static str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let span = tracing::info_span!("request", api, model);
        let start = Instant::now();
        let result = work.instrument(span.clone()).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => {
                span.in_scope(|| tracing::debug!(error = %e, "request failed"));
                e.kind()
            }
        };
        self.metrics.record(model, api, outcome, start.elapsed());
        result
    }
}

/// A running server.
pub struct Server {
    /// Where gRPC and REST listen (with the ports picked when 0 was asked for).
    pub grpc_addr: SocketAddr,
    pub rest_addr: SocketAddr,
    pub shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<std::result::Result<(), String>>>,
}

impl Server {
    /// Binds both ports, starts loading the models (readiness turns true once each has a
    /// version available), and serves until `shutdown` completes; then stops taking
    /// connections and finishes the requests in flight.
    pub async fn start(
        config: ServeConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::result::Result<Server, String> {
        if config.models.is_empty() {
            return Err("no model to serve: give --model_name and --model_base_path, or --model_config_file".into());
        }
        let repo = Arc::new(Repository::new(
            &config.models,
            config.limits.clone(),
            config.batching.clone(),
            lathe_runtime::ModelOptions {
                threads: config.threads,
                backend: config.backend,
                ..lathe_runtime::ModelOptions::default()
            },
        ));
        let shared = Arc::new(Shared {
            repo: repo.clone(),
            metrics: Metrics::default(),
            serving: true.into(),
        });
        let bind = |port: u16| {
            let addr = SocketAddr::new(config.host, port);
            async move {
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| format!("cannot listen on {addr}: {e}"))
            }
        };
        let grpc_listener = bind(config.grpc_port).await?;
        let rest_listener = bind(config.rest_port).await?;
        let grpc_addr = grpc_listener.local_addr().map_err(|e| e.to_string())?;
        let rest_addr = rest_listener.local_addr().map_err(|e| e.to_string())?;

        // One shutdown signal, watched by both servers and the poller.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopping = shared.clone();
        tokio::spawn(async move {
            shutdown.await;
            stopping
                .serving
                .store(false, std::sync::atomic::Ordering::Relaxed);
            tracing::info!("shutting down: finishing the requests in flight");
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };

        let mut tasks = Vec::new();
        // The poller: the first scan at once, then every poll interval.
        let poll = config.poll_interval;
        let rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let r = repo.clone();
                let _ = tokio::task::spawn_blocking(move || r.refresh()).await;
                if poll.is_zero() {
                    return Ok(());
                }
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = stopped(rx.clone()) => return Ok(()),
                }
            }
        }));

        let max = config.limits.max_request_bytes;
        let services = grpc::Services {
            shared: shared.clone(),
        };
        use grpc::generated::{
            inference_service::g_r_p_c_inference_service_server::GRPCInferenceServiceServer,
            model_service::model_service_server::ModelServiceServer,
            prediction_service::prediction_service_server::PredictionServiceServer,
        };
        let router = tonic::transport::Server::builder()
            .add_service(
                PredictionServiceServer::new(services.clone())
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(ModelServiceServer::new(services.clone()))
            .add_service(
                GRPCInferenceServiceServer::new(services)
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(usize::MAX),
            );
        // Without TCP_NODELAY a response's small frames wait on the peer's delayed ACK.
        let incoming =
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
        let rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(incoming, stopped(rx))
                .await
                .map_err(|e| format!("gRPC server: {e}"))
        }));

        let app = rest::router(shared.clone());
        let rx = stop_rx;
        tasks.push(tokio::spawn(async move {
            use axum::serve::ListenerExt;
            let listener = rest_listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!("TCP_NODELAY on a REST connection: {e}");
                }
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped(rx))
                .await
                .map_err(|e| format!("REST server: {e}"))
        }));
        tracing::info!(%grpc_addr, %rest_addr, "serving");
        Ok(Server {
            grpc_addr,
            rest_addr,
            shared,
            tasks,
        })
    }

    /// Waits until the servers have stopped (after the shutdown signal, once the requests in
    /// flight are answered).
    pub async fn wait(self) -> std::result::Result<(), String> {
        for t in self.tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        Ok(())
    }
}

/// Serves `config` until SIGTERM or Ctrl-C (the command line's entry point).
pub fn run(config: ServeConfig) -> std::result::Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lathe-serve")
        .build()
        .map_err(|e| format!("cannot start the server's runtime: {e}"))?;
    runtime.block_on(async {
        let server = Server::start(config, shutdown_signal()).await?;
        eprintln!(
            "lathe serve: gRPC on {}, REST on {}",
            server.grpc_addr, server.rest_addr
        );
        server.wait().await
    })
}

/// Completes on SIGTERM (what Kubernetes sends) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
