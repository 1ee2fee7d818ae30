//! What `lathe serve` serves and how: the models (name, base path, version policy, labels),
//! the ports, and the limits every request is held to.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Which versions under a model's base path are served (TensorFlow Serving's version policies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionPolicy {
    /// The newest `n` versions (TensorFlow Serving's default is the newest one).
    Latest(usize),
    /// Every version found.
    All,
    /// These versions only.
    Specific(Vec<i64>),
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

impl VersionPolicy {
    /// The versions to serve of those on disk (`found` in ascending order).
    pub fn choose(&self, found: &[i64]) -> Vec<i64> {
        match self {
            VersionPolicy::Latest(n) => found[found.len().saturating_sub(*n)..].to_vec(),
            VersionPolicy::All => found.to_vec(),
            VersionPolicy::Specific(want) => {
                found.iter().copied().filter(|v| want.contains(v)).collect()
            }
        }
    }
}

/// Dynamic batching: calls that arrive together are run as one batch along axis 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchingConfig {
    /// The most rows one batch holds.
    pub max_batch_size: usize,
    /// How long the first call of a batch waits for others.
    pub batch_timeout: Duration,
}

/// One served model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    /// The name clients use.
    pub name: String,
    /// A directory of numbered version directories, each holding a SavedModel, an `.onnx`, a
    /// frozen `.pb`, an IR text `.lir` or a compiled `.lathe`.
    pub base_path: PathBuf,
    pub version_policy: VersionPolicy,
    /// Labels (`stable`, `canary`) and the versions they name.
    pub version_labels: BTreeMap<String, i64>,
}

/// Limits on what one request may ask of the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest request body (REST) or message (gRPC), and the largest tensor a request
    /// may describe.
    pub max_request_bytes: usize,
    /// How long a request may take, queueing included.
    pub request_timeout: Duration,
    /// Calls of one model version running at once.
    pub max_concurrent_runs: usize,
    /// Calls of one model version waiting to run; more are refused (429 / RESOURCE_EXHAUSTED).
    pub max_queued: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 64 << 20,
            request_timeout: Duration::from_secs(30),
            max_concurrent_runs: lathe_runtime::default_threads(),
            max_queued: 256,
        }
    }
}

/// Everything `lathe serve` is told.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub models: Vec<ModelConfig>,
    /// The address both servers listen on.
    pub host: IpAddr,
    /// gRPC (TensorFlow Serving's PredictionService and ModelService, and the Open Inference
    /// Protocol's GRPCInferenceService); 0 picks a free port.
    pub grpc_port: u16,
    /// REST (`/v1/...` and `/v2/...`, metrics); 0 picks a free port.
    pub rest_port: u16,
    /// How often base paths are scanned for new versions; zero scans once, at start.
    pub poll_interval: Duration,
    pub limits: Limits,
    /// Dynamic batching for every model with a batch dimension; `None` runs each call alone.
    pub batching: Option<BatchingConfig>,
    /// Threads each model's CPU kernels may use; `None` is one per core.
    pub threads: Option<usize>,
    /// Where the models run (`cpu`, `interp`, `cuda`).
    pub backend: lathe_runtime::Backend,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            models: Vec::new(),
            host: IpAddr::from([0, 0, 0, 0]),
            grpc_port: 8500,
            rest_port: 8501,
            poll_interval: Duration::from_secs(1),
            limits: Limits::default(),
            batching: None,
            threads: None,
            backend: lathe_runtime::Backend::Cpu,
        }
    }
}

/// The models of a TensorFlow Serving model config file (`--model_config_file`, protobuf text
/// format with a `model_config_list`). A relative `base_path` is taken from the file's
/// directory.
pub fn read_model_config_file(path: &std::path::Path) -> Result<Vec<ModelConfig>, String> {
    use lathe_proto::tensorflow::serving::{
        model_server_config, servable_version_policy, ModelServerConfig,
    };
    use prost::Message as _;
    use prost_reflect::{DescriptorPool, DynamicMessage};
    let at = |e: String| format!("`{}`: {e}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| at(e.to_string()))?;
    let pool = DescriptorPool::decode(lathe_proto::FILE_DESCRIPTOR_SET)
        .expect("lathe-proto embeds a valid descriptor set");
    let desc = pool
        .get_message_by_name("tensorflow.serving.ModelServerConfig")
        .expect("the descriptor set holds tensorflow.serving.ModelServerConfig");
    let msg = DynamicMessage::parse_text_format(desc, &text)
        .map_err(|e| at(format!("not a valid model config ({e})")))?;
    let config =
        ModelServerConfig::decode(msg.encode_to_vec().as_slice()).map_err(|e| at(e.to_string()))?;
    let Some(model_server_config::Config::ModelConfigList(list)) = config.config else {
        return Err(at("it holds no `model_config_list`".into()));
    };
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut models: Vec<ModelConfig> = Vec::new();
    for (k, c) in list.config.into_iter().enumerate() {
        if c.name.is_empty() || c.base_path.is_empty() {
            return Err(at(format!("config {k} needs a `name` and a `base_path`")));
        }
        if models.iter().any(|m| m.name == c.name) {
            return Err(at(format!("model `{}` is configured twice", c.name)));
        }
        let version_policy = match c.model_version_policy.and_then(|p| p.policy_choice) {
            None => VersionPolicy::default(),
            Some(servable_version_policy::PolicyChoice::Latest(l)) => {
                VersionPolicy::Latest(l.num_versions.max(1) as usize)
            }
            Some(servable_version_policy::PolicyChoice::All(_)) => VersionPolicy::All,
            Some(servable_version_policy::PolicyChoice::Specific(s)) => {
                VersionPolicy::Specific(s.versions)
            }
        };
        models.push(ModelConfig {
            name: c.name,
            base_path: dir.join(c.base_path),
            version_policy,
            version_labels: c.version_labels.into_iter().collect(),
        });
    }
    if models.is_empty() {
        return Err(at("its `model_config_list` is empty".into()));
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_policies_choose_from_what_is_on_disk() {
        let found = [1, 2, 5, 7];
        assert_eq!(VersionPolicy::default().choose(&found), vec![7]);
        assert_eq!(VersionPolicy::Latest(2).choose(&found), vec![5, 7]);
        assert_eq!(VersionPolicy::Latest(9).choose(&found), found.to_vec());
        assert_eq!(VersionPolicy::All.choose(&found), found.to_vec());
        assert_eq!(VersionPolicy::Specific(vec![2, 3]).choose(&found), vec![2]);
        assert!(VersionPolicy::Latest(1).choose(&[]).is_empty());
    }
}
