//! The model repository: for each configured model, the versions found under its base path,
//! loaded per its version policy, and their states as `GetModelStatus` reports them.
//!
//! [`Repository::refresh`] scans the base paths: versions the policy newly wants are loaded
//! first, and only then are versions it no longer wants unloaded, so a model that had a
//! version keeps serving one throughout. Unloading drops the repository's reference; requests
//! still running hold their own (see [`crate::servable`]).

use crate::config::{BatchingConfig, Limits, ModelConfig};
use crate::error::{Result, ServeError};
use crate::servable::Servable;
use lathe_runtime::ModelOptions;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// A version's state (TensorFlow Serving's `ModelVersionStatus.State`).
#[derive(Clone, Debug)]
pub enum VersionState {
    Loading,
    Available(Arc<Servable>),
    /// Loading failed; the message says why. Retried when the version's directory changes.
    Failed {
        error: String,
        stamp: Option<std::time::SystemTime>,
    },
    /// Unloaded (no longer wanted by the policy, or gone from disk).
    End,
}

/// Which version a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionChoice {
    Newest,
    Number(i64),
    Label(String),
}

struct Entry {
    config: ModelConfig,
    versions: BTreeMap<i64, VersionState>,
}

/// Every served model's versions.
pub struct Repository {
    models: RwLock<BTreeMap<String, Entry>>,
    limits: Limits,
    batching: Option<BatchingConfig>,
    /// How each model is loaded: its backend and threads.
    options: ModelOptions,
}

impl Repository {
    pub fn new(
        models: &[ModelConfig],
        limits: Limits,
        batching: Option<BatchingConfig>,
        options: ModelOptions,
    ) -> Repository {
        let models = models
            .iter()
            .map(|c| {
                let entry = Entry {
                    config: c.clone(),
                    versions: BTreeMap::new(),
                };
                (c.name.clone(), entry)
            })
            .collect();
        Repository {
            models: RwLock::new(models),
            limits,
            batching,
            options,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.models.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.models.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The served models' names.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Whether every model has a version available (the server's readiness).
    pub fn ready(&self) -> bool {
        self.read().values().all(|e| {
            e.versions
                .values()
                .any(|v| matches!(v, VersionState::Available(_)))
        })
    }

    /// The states of `name`'s versions, oldest first.
    pub fn states(&self, name: &str) -> Result<Vec<(i64, VersionState)>> {
        let models = self.read();
        let entry = models
            .get(name)
            .ok_or_else(|| self.unknown(name, &models))?;
        Ok(entry
            .versions
            .iter()
            .map(|(v, s)| (*v, s.clone()))
            .collect())
    }

    /// The version of `name` a request asks for, when it is available.
    pub fn get(&self, name: &str, choice: &VersionChoice) -> Result<Arc<Servable>> {
        let models = self.read();
        let entry = models
            .get(name)
            .ok_or_else(|| self.unknown(name, &models))?;
        let number = match choice {
            VersionChoice::Newest => {
                return (entry.versions.values().rev())
                    .find_map(|s| match s {
                        VersionState::Available(s) => Some(s.clone()),
                        _ => None,
                    })
                    .ok_or_else(|| {
                        let why = (entry.versions.iter().rev()).find_map(|(v, s)| match s {
                            VersionState::Failed { error, .. } => {
                                Some(format!("version {v} failed to load: {error}"))
                            }
                            VersionState::Loading => Some(format!("version {v} is still loading")),
                            _ => None,
                        });
                        ServeError::Unavailable(format!(
                            "model `{name}` has no version available: {}",
                            why.unwrap_or_else(|| format!(
                                "none was found under `{}`",
                                entry.config.base_path.display()
                            ))
                        ))
                    });
            }
            VersionChoice::Number(n) => *n,
            VersionChoice::Label(l) => *entry.config.version_labels.get(l).ok_or_else(|| {
                ServeError::NotFound(format!("model `{name}` has no version labelled `{l}`"))
            })?,
        };
        match entry.versions.get(&number) {
            Some(VersionState::Available(s)) => Ok(s.clone()),
            Some(VersionState::Loading) => Err(ServeError::Unavailable(format!(
                "model `{name}` version {number} is still loading"
            ))),
            Some(VersionState::Failed { error, .. }) => Err(ServeError::Unavailable(format!(
                "model `{name}` version {number} failed to load: {error}"
            ))),
            Some(VersionState::End) | None => Err(ServeError::NotFound(format!(
                "model `{name}` has no version {number} (available: {})",
                available(&entry.versions)
            ))),
        }
    }

    fn unknown(&self, name: &str, models: &BTreeMap<String, Entry>) -> ServeError {
        ServeError::NotFound(format!(
            "no model named `{name}` is served (the server has: {})",
            models
                .keys()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    /// Scans every base path and loads and unloads versions to match the version policies.
    /// Blocking: loading compiles models. Returns how many versions were loaded.
    pub fn refresh(&self) -> usize {
        let configs: Vec<ModelConfig> = self.read().values().map(|e| e.config.clone()).collect();
        let mut loaded = 0;
        for config in configs {
            let found = match scan(&config.base_path) {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(model = %config.name, "{e}");
                    continue;
                }
            };
            let numbers: Vec<i64> = found.iter().map(|(v, _)| *v).collect();
            let wanted = config.version_policy.choose(&numbers);
            for (version, stamp) in found.iter().filter(|(v, _)| wanted.contains(v)) {
                if self.start_loading(&config.name, *version, *stamp) {
                    loaded += usize::from(self.load(&config, *version, *stamp));
                }
            }
            self.unload_unwanted(&config.name, &wanted);
        }
        loaded
    }

    /// Marks a version loading, unless it is loaded, loading, or failed with the same files.
    fn start_loading(
        &self,
        name: &str,
        version: i64,
        stamp: Option<std::time::SystemTime>,
    ) -> bool {
        let mut models = self.write();
        let Some(entry) = models.get_mut(name) else {
            return false;
        };
        match entry.versions.get(&version) {
            Some(VersionState::Available(_) | VersionState::Loading) => false,
            Some(VersionState::Failed { stamp: s, .. }) if *s == stamp => false,
            _ => {
                entry.versions.insert(version, VersionState::Loading);
                true
            }
        }
    }

    fn load(
        &self,
        config: &ModelConfig,
        version: i64,
        stamp: Option<std::time::SystemTime>,
    ) -> bool {
        let dir = config.base_path.join(version.to_string());
        let start = std::time::Instant::now();
        let result = Servable::load(
            &config.name,
            version,
            &dir,
            &self.options,
            &self.limits,
            self.batching.as_ref(),
        );
        let state = match result {
            Ok(s) => {
                tracing::info!(
                    model = %config.name,
                    version,
                    path = %s.path.display(),
                    ms = start.elapsed().as_secs_f64() * 1e3,
                    "version available"
                );
                VersionState::Available(Arc::new(s))
            }
            Err(error) => {
                tracing::error!(model = %config.name, version, "loading failed: {error}");
                VersionState::Failed { error, stamp }
            }
        };
        let ok = matches!(state, VersionState::Available(_));
        if let Some(entry) = self.write().get_mut(&config.name) {
            entry.versions.insert(version, state);
        }
        ok
    }

    /// Unloads the available versions not in `wanted`, once some wanted version is available
    /// (or none is wanted at all).
    fn unload_unwanted(&self, name: &str, wanted: &[i64]) {
        let mut models = self.write();
        let Some(entry) = models.get_mut(name) else {
            return;
        };
        let serving_wanted = wanted
            .iter()
            .any(|v| matches!(entry.versions.get(v), Some(VersionState::Available(_))));
        if !serving_wanted && !wanted.is_empty() {
            return;
        }
        for (v, state) in entry.versions.iter_mut() {
            if !wanted.contains(v) && !matches!(state, VersionState::End) {
                tracing::info!(model = %name, version = v, "version unloaded (in-flight calls finish first)");
                *state = VersionState::End;
            }
        }
    }
}

fn available(versions: &BTreeMap<i64, VersionState>) -> String {
    let v: Vec<String> = (versions.iter())
        .filter(|(_, s)| matches!(s, VersionState::Available(_)))
        .map(|(v, _)| v.to_string())
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The numbered version directories under `base` (ascending) with their modification times.
fn scan(
    base: &std::path::Path,
) -> std::result::Result<Vec<(i64, Option<std::time::SystemTime>)>, String> {
    let entries =
        std::fs::read_dir(base).map_err(|e| format!("base path `{}`: {e}", base.display()))?;
    let mut found: Vec<(i64, Option<std::time::SystemTime>)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let v = e
                .file_name()
                .to_str()?
                .parse::<i64>()
                .ok()
                .filter(|v| *v >= 0)?;
            Some((v, e.metadata().and_then(|m| m.modified()).ok()))
        })
        .collect();
    found.sort();
    Ok(found)
}
