//! Musubi's configuration: one typed struct, read from TOML with environment overrides and
//! validated at start-up so that a mistake stops the process with a clear message.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The demo configuration shipped in the repository, used when no `--config` is given.
pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");

/// Environment variables starting with this override configuration keys:
/// `MUSUBI__SERVER__LISTEN=...` sets `server.listen`.
pub const ENV_PREFIX: &str = "MUSUBI__";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub fhir: FhirConfig,
    #[serde(default)]
    pub profiles: ProfilesConfig,
    #[serde(default)]
    pub vaccination: VaccinationConfig,
    #[serde(default)]
    pub municipal: MunicipalConfig,
    pub log: LogConfig,
}

/// The municipal standard-spec adapter (docs/municipal.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MunicipalConfig {
    /// Rows per transactional chunk of an import: each chunk is stored atomically.
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: usize,
    /// Largest file `POST /municipal/v1/imports` accepts (it is spooled to disk, not memory).
    #[serde(default = "default_max_upload_bytes")]
    pub max_upload_bytes: u64,
}

impl Default for MunicipalConfig {
    fn default() -> Self {
        MunicipalConfig {
            chunk_rows: default_chunk_rows(),
            max_upload_bytes: default_max_upload_bytes(),
        }
    }
}

fn default_chunk_rows() -> usize {
    2000
}

fn default_max_upload_bytes() -> u64 {
    2 << 30
}

/// JP Core / Musubi profile validation and the reference data behind it (docs/profiles.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilesConfig {
    /// Resource types that must conform to their default profile (JP_Patient for Patient, …)
    /// even when they claim none. Resources claiming a known profile in `meta.profile` are
    /// always checked against it.
    #[serde(default)]
    pub enforce: Vec<String>,
    /// A folder of extra data files read at start-up, laid out like `profiles/jp/`:
    /// `terminology/`, `structure/`, `vaccination/`, `questionnaires/`. Empty: built-in data only.
    #[serde(default)]
    pub extra_dir: Option<PathBuf>,
}

/// The routine-vaccination (定期接種) rules applied to Immunization writes
/// (docs/vaccination-rules.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaccinationConfig {
    /// What a rule violation does on Immunization create/update: `warn` stores the resource and
    /// reports the violations as warnings; `reject` answers 422 and stores nothing.
    #[serde(default = "default_on_violation")]
    pub on_violation: OnViolation,
}

impl Default for VaccinationConfig {
    fn default() -> Self {
        VaccinationConfig {
            on_violation: default_on_violation(),
        }
    }
}

fn default_on_violation() -> OnViolation {
    OnViolation::Warn
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnViolation {
    Warn,
    Reject,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    #[serde(default)]
    pub public_base_url: String,
    pub max_body_bytes: usize,
    pub request_timeout_secs: u64,
    /// How long an idle keep-alive connection stays open.
    pub keep_alive_secs: u64,
    #[serde(default)]
    pub workers: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub cache_mb: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirConfig {
    pub resource_types: Vec<String>,
    pub default_count: usize,
    pub max_count: usize,
    pub allow_update_create: bool,
    pub default_handling: Handling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Handling {
    Lenient,
    Strict,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration {origin} is not valid TOML: {message}")]
    Syntax { origin: String, message: String },
    #[error("configuration {origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl Config {
    /// Load from `path` (or the demo configuration), apply environment overrides, validate.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (origin, text) = match path {
            Some(p) => (
                p.display().to_string(),
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?,
            ),
            None => ("(built-in demo)".to_string(), DEMO_CONFIG.to_string()),
        };
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    origin: origin.clone(),
                    message: e.to_string(),
                })?;
        for (name, value) in env {
            if let Some(path) = name.strip_prefix(ENV_PREFIX) {
                apply_override(&mut table, path, &value).map_err(|message| {
                    ConfigError::Invalid {
                        origin: format!("environment variable {name}"),
                        message,
                    }
                })?;
            }
        }
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    origin: origin.clone(),
                    message: e.to_string(),
                })?;
        config
            .validate()
            .map_err(|message| ConfigError::Invalid { origin, message })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        self.listen_addr()?;
        let base = &self.server.public_base_url;
        if !(base.is_empty() || base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "server.public_base_url must start with http:// or https://, got {base:?}"
            ));
        }
        if self.server.max_body_bytes == 0 || self.server.max_body_bytes > 1 << 30 {
            return Err(format!(
                "server.max_body_bytes must be between 1 and 1073741824, got {}",
                self.server.max_body_bytes
            ));
        }
        if self.server.request_timeout_secs == 0 {
            return Err("server.request_timeout_secs must be at least 1".into());
        }
        if self.fhir.default_count == 0 || self.fhir.default_count > self.fhir.max_count {
            return Err(format!(
                "fhir.default_count must be between 1 and fhir.max_count ({}), got {}",
                self.fhir.max_count, self.fhir.default_count
            ));
        }
        let defs = fhir::Definitions::r4();
        for rt in &self.fhir.resource_types {
            if !defs.is_resource_type(rt) {
                return Err(format!(
                    "fhir.resource_types: {rt:?} is not an R4 resource type"
                ));
            }
        }
        if !(1..=100_000).contains(&self.municipal.chunk_rows) {
            return Err(format!(
                "municipal.chunk_rows must be between 1 and 100000, got {}",
                self.municipal.chunk_rows
            ));
        }
        for rt in &self.profiles.enforce {
            if !self.fhir.resource_types.contains(rt) {
                return Err(format!(
                    "profiles.enforce: {rt:?} is not one of fhir.resource_types"
                ));
            }
        }
        if let Some(dir) = &self.profiles.extra_dir
            && !dir.as_os_str().is_empty()
            && !dir.is_dir()
        {
            return Err(format!(
                "profiles.extra_dir {} is not a readable folder",
                dir.display()
            ));
        }
        if self.fhir.resource_types.is_empty() {
            return Err("fhir.resource_types must list at least one resource type".into());
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| format!("log.level {:?} is not a valid filter: {e}", self.log.level))?;
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.server.listen.parse().map_err(|_| {
            format!(
                "server.listen must be an address like 127.0.0.1:8080, got {:?}",
                self.server.listen
            )
        })
    }
}

/// Set `a__b` (already without the prefix) in the table; the value is read as a TOML value when
/// it parses as one (numbers, booleans, arrays) and as a string otherwise.
fn apply_override(table: &mut toml::Table, path: &str, raw: &str) -> Result<(), String> {
    let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
    let Some((last, sections)) = parts.split_last() else {
        return Err("empty key".into());
    };
    let mut current = table;
    for section in sections {
        current = current
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("{section} is not a section"))?;
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn demo_config_is_valid() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.server.max_body_bytes, 16 * 1024 * 1024);
    }

    #[test]
    fn environment_overrides_keys() {
        let c = Config::load(
            None,
            env(&[
                ("MUSUBI__SERVER__LISTEN", "127.0.0.1:9999"),
                ("MUSUBI__SERVER__MAX_BODY_BYTES", "1024"),
                ("MUSUBI__FHIR__DEFAULT_HANDLING", "strict"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:9999");
        assert_eq!(c.server.max_body_bytes, 1024);
        assert_eq!(c.fhir.default_handling, Handling::Strict);
    }

    #[test]
    fn mistakes_are_reported_clearly() {
        let err = Config::load(None, env(&[("MUSUBI__SERVER__LISTEN", "localhost")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.listen"), "{err}");
        let err = Config::load(None, env(&[("MUSUBI__SERVER__LISTN", "x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
        let err = Config::load(
            None,
            env(&[("MUSUBI__FHIR__RESOURCE_TYPES", "[\"Patient\", \"Patinet\"]")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("Patinet"), "{err}");
    }
}
