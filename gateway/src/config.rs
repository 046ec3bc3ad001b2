//! Musubi's configuration: one typed struct, read from TOML with environment overrides and
//! validated at start-up so that a mistake stops the process with a clear message.

use std::collections::HashMap;
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
    #[serde(default)]
    pub auth: AuthConfig,
    /// The registered OAuth clients (docs/access.md).
    #[serde(default)]
    pub clients: Vec<auth::Client>,
    #[serde(default)]
    pub rate_limits: RateLimitConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Consent enforcement at the FHIR exits (docs/consent.md, "Enforcement in the gateway").
    #[serde(default)]
    pub consent: ConsentConfig,
    /// The AuditEvent trail of disclosures, refusals and writes.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The My Number Portal adapter (docs/my-number-portal.md, "Serving"). Off by default.
    #[serde(default)]
    pub portal: MynaPortalConfig,
    /// The outbox of routed deliveries (docs/routing.md, "Delivery in the gateway").
    #[serde(default)]
    pub routing: RoutingConfig,
    /// Pseudonymised research exports (docs/consent.md, "Research exports"). None by default.
    #[serde(default)]
    pub research: crate::research::ResearchConfig,
    /// The month close's recipients found by registration, not by code: the 国保連
    /// (docs/billing.md, "Claims via the 国保連").
    #[serde(default)]
    pub billing: crate::month_close::BillingConfig,
    pub log: LogConfig,
}

/// Routed deliveries: the outbox Tasks written with each record, the worker that delivers them
/// and the recipients' rest-hook endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Plan deliveries on every write and run the worker. `false` writes no outbox Tasks.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How often the worker looks for due rest-hook deliveries, in milliseconds.
    #[serde(default = "default_routing_poll_ms")]
    pub poll_interval_ms: u64,
    /// Deliveries the worker attempts per poll at most.
    #[serde(default = "default_routing_batch")]
    pub batch_size: usize,
    /// How long one rest-hook request may take before it counts as a transient failure.
    #[serde(default = "default_routing_timeout_secs")]
    pub request_timeout_secs: u64,
    /// Replaces every channel's retry policy from profiles/jp/routing (for tests and drills).
    #[serde(default)]
    pub retry: Option<RetryOverride>,
    /// Recipient id (a registered client id, or `Organization/{id}`) → the FHIR base its
    /// rest-hook deliveries are POSTed to. A recipient not listed pulls from the mailbox.
    #[serde(default)]
    pub endpoints: std::collections::BTreeMap<String, String>,
    /// Municipality code → the URL its municipal files are POSTed to. A municipality not listed
    /// pulls its files from `/routing/v1/files`.
    #[serde(default)]
    pub municipal_files: std::collections::BTreeMap<String, String>,
    /// How often a municipality's due deliveries are gathered into a file, in seconds, counted
    /// from midnight in Japan (86400: one file a day, after midnight). 0 gathers every round.
    #[serde(default = "default_municipal_file_interval_secs")]
    pub municipal_file_interval_secs: u64,
    /// Municipality code → the client id of its district team (地区担当), a registered
    /// `municipality` client; the team receives the weekly digest of records needing care.
    #[serde(default)]
    pub district_teams: std::collections::BTreeMap<String, String>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            enabled: true,
            poll_interval_ms: default_routing_poll_ms(),
            batch_size: default_routing_batch(),
            request_timeout_secs: default_routing_timeout_secs(),
            retry: None,
            endpoints: std::collections::BTreeMap::new(),
            municipal_files: std::collections::BTreeMap::new(),
            municipal_file_interval_secs: default_municipal_file_interval_secs(),
            district_teams: std::collections::BTreeMap::new(),
        }
    }
}

/// One retry policy for every channel, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryOverride {
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    pub max_attempts: u32,
}

fn default_routing_poll_ms() -> u64 {
    1000
}

fn default_routing_batch() -> usize {
    50
}

fn default_routing_timeout_secs() -> u64 {
    10
}

fn default_municipal_file_interval_secs() -> u64 {
    86_400
}

/// Which callers' disclosures are decided by the person's consents, and for what purpose.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentConfig {
    /// Decide every record returned to a caller acting for an organisation (a system client)
    /// with the person's consents. `false` leaves disclosure to scopes alone.
    #[serde(default = "default_true")]
    pub enforce: bool,
    /// A consent-checked search evaluates its whole match set before paging (so totals never
    /// count hidden records); above this many matches it answers 400 asking to narrow it.
    #[serde(default = "default_max_search_matches")]
    pub max_search_matches: usize,
    /// What decides a record no consent can be about: an unclassified record, or one naming no
    /// patient. `base-policy`: the purpose's base policy (opt-out permits, opt-in denies);
    /// `deny`: always withheld.
    #[serde(default)]
    pub fallback: ConsentFallback,
    /// Resource types whose disclosure scopes alone govern: the audit trail, the consents
    /// themselves, provenance.
    #[serde(default = "default_exempt_types")]
    pub exempt_types: Vec<String>,
    /// The purpose of use per client kind; a kind not listed uses its built-in default
    /// ([`ConsentConfig::purposes_of`]).
    #[serde(default)]
    pub purposes: HashMap<auth::ClientKind, KindPurposes>,
}

impl Default for ConsentConfig {
    fn default() -> Self {
        ConsentConfig {
            enforce: true,
            max_search_matches: default_max_search_matches(),
            fallback: ConsentFallback::default(),
            exempt_types: default_exempt_types(),
            purposes: HashMap::new(),
        }
    }
}

impl ConsentConfig {
    /// The purposes a client kind acts under: configured, else the built-in default. An
    /// operator has none: it is never the recipient of a disclosure.
    pub fn purposes_of(&self, kind: auth::ClientKind) -> Option<KindPurposes> {
        if let Some(configured) = self.purposes.get(&kind) {
            return Some(configured.clone());
        }
        let (default, allowed): (&str, &[&str]) = match kind {
            auth::ClientKind::ClinicEmr => ("TREAT", &["TREAT", "COC"]),
            auth::ClientKind::MedicalAssociation => ("HPAYMT", &["HPAYMT"]),
            auth::ClientKind::Municipality => ("PUBHLTH", &["PUBHLTH", "COC", "HPAYMT"]),
            auth::ClientKind::PhrApp | auth::ClientKind::PortalAdapter => ("PATRQT", &["PATRQT"]),
            auth::ClientKind::ResearchProject => ("HRESCH", &["HRESCH"]),
            auth::ClientKind::Operator => return None,
        };
        Some(KindPurposes {
            default: default.to_owned(),
            allowed: allowed.iter().map(|p| (*p).to_owned()).collect(),
        })
    }
}

/// The purpose of use of one client kind: `default` unless the request's `X-Purpose-Of-Use`
/// header names another of `allowed` (v3 ActReason codes, each configured in
/// profiles/jp/consent/purposes.json).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindPurposes {
    pub default: String,
    pub allowed: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentFallback {
    #[default]
    BasePolicy,
    Deny,
}

fn default_true() -> bool {
    true
}

fn default_max_search_matches() -> usize {
    1000
}

fn default_exempt_types() -> Vec<String> {
    ["AuditEvent", "Consent", "Provenance"]
        .map(String::from)
        .to_vec()
}

/// What the AuditEvent trail records.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Consent-checked reads: `sync` commits one AuditEvent per patient per request before the
    /// response leaves; `off` records none.
    #[serde(default)]
    pub reads: ReadAudit,
    /// Writes: `same-commit` stores an AuditEvent per written resource in the write's own
    /// commit; `off` records none.
    #[serde(default)]
    pub writes: WriteAudit,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadAudit {
    #[default]
    Sync,
    Off,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteAudit {
    #[default]
    SameCommit,
    Off,
}

/// The My Number Portal (マイナポータル) adapter served under `/phr/v1` (docs/my-number-portal.md,
/// "Serving"). Off by default: it needs a client id from the Digital Agency's review.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MynaPortalConfig {
    #[serde(default)]
    pub enabled: bool,
    /// The portal's base URL (`https://` only); the layout file's paths are appended to it.
    #[serde(default)]
    pub base_url: String,
    #[serde(default)]
    pub client_id: String,
    /// The P-256 private key (PKCS#8 PEM) that signs `private_key_jwt` client assertions.
    /// Exactly one of `client_key_file` and `client_secret_file` is set.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// The `kid` put in the assertion's header, when the portal asks for one.
    #[serde(default)]
    pub client_key_id: Option<String>,
    /// A file holding a client secret (`client_secret_post`), for sandboxes that issue one.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Where the portal sends the person back: this gateway's
    /// `{public base}/phr/v1/myna-portal/callback`, as registered with the portal.
    #[serde(default)]
    pub redirect_uri: String,
    #[serde(default = "default_portal_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Per attempt, the whole answer included.
    #[serde(default = "default_portal_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Attempts per request, the first included.
    #[serde(default = "default_portal_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_portal_retry_base_delay_ms")]
    pub retry_base_delay_ms: u64,
    #[serde(default = "default_portal_retry_max_delay_ms")]
    pub retry_max_delay_ms: u64,
    /// A `Retry-After` longer than this ends the pull (503 with the portal's `Retry-After`).
    #[serde(default = "default_portal_max_retry_after_secs")]
    pub max_retry_after_secs: u64,
    /// Trust the public web PKI roots (webpki-roots).
    #[serde(default = "default_true")]
    pub trust_public_roots: bool,
    /// Further CA certificates (PEM files) to trust for the portal.
    #[serde(default)]
    pub extra_ca_files: Vec<PathBuf>,
    /// Pages read per endpoint at most, against a looping cursor.
    #[serde(default = "default_portal_max_pages")]
    pub max_pages: u32,
    /// How long a started authorisation waits for its callback.
    #[serde(default = "default_portal_pending_ttl_secs")]
    pub pending_ttl_secs: u64,
    /// Also pull check-up results (乳幼児健診, 妊婦健診) when the caller may write Observation and
    /// DiagnosticReport.
    #[serde(default = "default_true")]
    pub pull_checkups: bool,
}

impl Default for MynaPortalConfig {
    fn default() -> Self {
        MynaPortalConfig {
            enabled: false,
            base_url: String::new(),
            client_id: String::new(),
            client_key_file: None,
            client_key_id: None,
            client_secret_file: None,
            redirect_uri: String::new(),
            connect_timeout_ms: default_portal_connect_timeout_ms(),
            request_timeout_ms: default_portal_request_timeout_ms(),
            max_attempts: default_portal_max_attempts(),
            retry_base_delay_ms: default_portal_retry_base_delay_ms(),
            retry_max_delay_ms: default_portal_retry_max_delay_ms(),
            max_retry_after_secs: default_portal_max_retry_after_secs(),
            trust_public_roots: true,
            extra_ca_files: Vec::new(),
            max_pages: default_portal_max_pages(),
            pending_ttl_secs: default_portal_pending_ttl_secs(),
            pull_checkups: true,
        }
    }
}

fn default_portal_connect_timeout_ms() -> u64 {
    5000
}

fn default_portal_request_timeout_ms() -> u64 {
    20_000
}

fn default_portal_max_attempts() -> u32 {
    4
}

fn default_portal_retry_base_delay_ms() -> u64 {
    250
}

fn default_portal_retry_max_delay_ms() -> u64 {
    8000
}

fn default_portal_max_retry_after_secs() -> u64 {
    30
}

fn default_portal_max_pages() -> u32 {
    50
}

fn default_portal_pending_ttl_secs() -> u64 {
    600
}

/// The built-in authorization server (docs/access.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of access tokens; keep it short, they cannot be revoked across processes.
    #[serde(default = "default_access_token_secs")]
    pub access_token_lifetime_secs: i64,
    /// Lifetime of each refresh token (it slides: every use returns a successor).
    #[serde(default = "default_refresh_token_secs")]
    pub refresh_token_lifetime_secs: i64,
    /// Clock skew tolerated on token times.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: i64,
    /// The ES256 signing key (PKCS#8 PEM). Empty: `<data_dir>/auth/signing-key.pem`, created
    /// on first start. To rotate, move the old file into `previous_key_files` and start with a
    /// new (or absent) one; tokens it signed keep verifying until they expire.
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// Retired keys that only verify (SPKI public-key PEM or PKCS#8).
    #[serde(default)]
    pub previous_key_files: Vec<PathBuf>,
    /// Verified tokens remembered until they expire (each miss costs an ES256 verification).
    #[serde(default = "default_verify_cache_entries")]
    pub verify_cache_entries: usize,
    /// People who sign in on the built-in page (parents, for PHR apps). Each is linked to their
    /// children by RelatedPerson resources carrying the identifier
    /// `https://musubi.example.org/fhir/IdSystem/account|<username>`.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Which interaction each FHIR operation counts as (SMART has no operation scopes).
    #[serde(default = "default_operations")]
    pub operations: auth::OperationPermissions,
    /// External identity providers whose JWT access tokens are accepted (docs/access.md).
    #[serde(default)]
    pub trusted_issuers: Vec<auth::TrustedIssuer>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            access_token_lifetime_secs: default_access_token_secs(),
            refresh_token_lifetime_secs: default_refresh_token_secs(),
            leeway_secs: default_leeway_secs(),
            signing_key_file: None,
            previous_key_files: Vec::new(),
            verify_cache_entries: default_verify_cache_entries(),
            users: Vec::new(),
            operations: default_operations(),
            trusted_issuers: Vec::new(),
        }
    }
}

/// The auth crate's read-only operations plus Musubi's own: the schedule, the 予診票
/// assessment and the barcode reader only read.
fn default_operations() -> auth::OperationPermissions {
    let mut operations = auth::OperationPermissions::default();
    for name in ["$immunization-schedule", "$assess", "$from-barcode"] {
        operations
            .0
            .insert(name.to_owned(), auth::Interaction::Read);
    }
    operations
}

fn default_access_token_secs() -> i64 {
    300
}

fn default_refresh_token_secs() -> i64 {
    30 * 24 * 3600
}

fn default_leeway_secs() -> i64 {
    30
}

fn default_verify_cache_entries() -> usize {
    100_000
}

/// A person who signs in on the built-in authorization page.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub username: String,
    /// Argon2id PHC string (`musubi hash-secret`).
    pub password_hash: String,
    /// Shown on the consent page.
    #[serde(default)]
    pub display_name: String,
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("username", &self.username)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

/// Request rates (token buckets): per authenticated client and per remote address.
/// `0` per second switches a limit off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    #[serde(default = "default_client_rate")]
    pub per_client_per_second: u32,
    #[serde(default = "default_client_burst")]
    pub per_client_burst: u32,
    #[serde(default = "default_ip_rate")]
    pub per_ip_per_second: u32,
    #[serde(default = "default_ip_burst")]
    pub per_ip_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_client_per_second: default_client_rate(),
            per_client_burst: default_client_burst(),
            per_ip_per_second: default_ip_rate(),
            per_ip_burst: default_ip_burst(),
        }
    }
}

fn default_client_rate() -> u32 {
    500
}

fn default_client_burst() -> u32 {
    1000
}

fn default_ip_rate() -> u32 {
    1000
}

fn default_ip_burst() -> u32 {
    2000
}

/// HTTPS and mutual TLS (docs/access.md). Off by default: the demo listens on loopback.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Server certificate chain (PEM).
    #[serde(default)]
    pub cert_file: PathBuf,
    /// Server private key (PKCS#8 PEM).
    #[serde(default)]
    pub key_file: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// `none`, `optional` (clients may present one) or `required` (the handshake fails without).
    #[serde(default)]
    pub client_certificates: ClientCertificates,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCertificates {
    #[default]
    None,
    Optional,
    Required,
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

/// Peak memory of an import grows with the chunk (two are in flight); 500 rows kept a
/// 100 000-row import under 190 MiB at the same CPU per row as 2000 (docs/performance.md).
fn default_chunk_rows() -> usize {
    500
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
    /// After this long without a request, each worker and the store writer hand the memory
    /// their last burst freed back to the OS (`memory`); 0 = never.
    #[serde(default = "default_release_idle_memory_secs")]
    pub release_idle_memory_secs: u64,
}

fn default_release_idle_memory_secs() -> u64 {
    2
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub cache_mb: u64,
    /// The engine's memory budget for commands run without the server (`musubi import`,
    /// `export`, `close-month`): they stream through the store once, so a cache as large as the
    /// server's only raises their peak (1 000 000-row import: 227 MiB at 64, 164 MiB at 16, the
    /// same CPU; docs/performance.md, round 5).
    #[serde(default = "default_offline_cache_mb")]
    pub offline_cache_mb: u64,
}

fn default_offline_cache_mb() -> u64 {
    16
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
        self.validate_access()?;
        self.validate_consent()?;
        self.validate_routing()?;
        self.billing.validate(&self.clients)?;
        if self.portal.enabled {
            // Builds the client once (key, CAs, data files) so a mistake stops the start.
            crate::portal_api::PortalService::build(
                &self.portal,
                self.profiles.extra_dir.as_deref(),
            )
            .map_err(|e| format!("portal: {e}"))?;
        }
        if self.fhir.resource_types.is_empty() {
            return Err("fhir.resource_types must list at least one resource type".into());
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| format!("log.level {:?} is not a valid filter: {e}", self.log.level))?;
        Ok(())
    }

    fn validate_access(&self) -> Result<(), String> {
        let auth = &self.auth;
        if !(30..=86_400).contains(&auth.access_token_lifetime_secs) {
            return Err(format!(
                "auth.access_token_lifetime_secs must be between 30 and 86400, got {}",
                auth.access_token_lifetime_secs
            ));
        }
        if auth.refresh_token_lifetime_secs < auth.access_token_lifetime_secs {
            return Err(
                "auth.refresh_token_lifetime_secs must be at least the access-token lifetime"
                    .into(),
            );
        }
        if !(0..=300).contains(&auth.leeway_secs) {
            return Err(format!(
                "auth.leeway_secs must be between 0 and 300, got {}",
                auth.leeway_secs
            ));
        }
        if auth.verify_cache_entries == 0 {
            return Err("auth.verify_cache_entries must be at least 1".into());
        }
        let mut usernames = std::collections::HashSet::new();
        for user in &auth.users {
            if user.username.is_empty() || !usernames.insert(user.username.as_str()) {
                return Err(format!(
                    "auth.users: username {:?} is empty or repeated",
                    user.username
                ));
            }
            if !user.password_hash.starts_with("$argon2id$") {
                return Err(format!(
                    "auth.users: the password_hash of {:?} is not an Argon2id PHC string (make one with `musubi hash-secret`)",
                    user.username
                ));
            }
        }
        auth::Registry::new(self.clients.clone()).map_err(|e| e.to_string())?;
        for (name, limit, burst) in [
            (
                "per_client",
                self.rate_limits.per_client_per_second,
                self.rate_limits.per_client_burst,
            ),
            (
                "per_ip",
                self.rate_limits.per_ip_per_second,
                self.rate_limits.per_ip_burst,
            ),
        ] {
            if limit > 0 && burst == 0 {
                return Err(format!("rate_limits.{name}_burst must be at least 1"));
            }
        }
        let tls = &self.tls;
        if tls.enabled {
            if tls.cert_file.as_os_str().is_empty() || tls.key_file.as_os_str().is_empty() {
                return Err("tls.enabled needs tls.cert_file and tls.key_file".into());
            }
            if tls.client_certificates != ClientCertificates::None && tls.client_ca_file.is_none() {
                return Err("tls.client_certificates needs tls.client_ca_file".into());
            }
        } else if tls.client_certificates != ClientCertificates::None {
            return Err("tls.client_certificates needs tls.enabled = true".into());
        }
        Ok(())
    }

    fn validate_routing(&self) -> Result<(), String> {
        let routing = &self.routing;
        if !(10..=3_600_000).contains(&routing.poll_interval_ms) {
            return Err(format!(
                "routing.poll_interval_ms must be between 10 and 3600000, got {}",
                routing.poll_interval_ms
            ));
        }
        if !(1..=1000).contains(&routing.batch_size) {
            return Err(format!(
                "routing.batch_size must be between 1 and 1000, got {}",
                routing.batch_size
            ));
        }
        if !(1..=600).contains(&routing.request_timeout_secs) {
            return Err(format!(
                "routing.request_timeout_secs must be between 1 and 600, got {}",
                routing.request_timeout_secs
            ));
        }
        if routing.municipal_file_interval_secs > 86_400 {
            return Err(format!(
                "routing.municipal_file_interval_secs must be between 0 and 86400, got {}",
                routing.municipal_file_interval_secs
            ));
        }
        if let Some(retry) = &routing.retry
            && (retry.max_attempts == 0 || retry.base_delay_ms > retry.max_delay_ms)
        {
            return Err(
                "routing.retry needs max_attempts ≥ 1 and base_delay_ms ≤ max_delay_ms".into(),
            );
        }
        for (recipient, url) in &routing.endpoints {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "routing.endpoints.{recipient:?} must be an http:// or https:// URL, got {url:?}"
                ));
            }
        }
        for (code, url) in &routing.municipal_files {
            identifiers::MunicipalityCode::parse(code)
                .map_err(|e| format!("routing.municipal_files.{code:?}: {e}"))?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "routing.municipal_files.{code:?} must be an http:// or https:// URL, got {url:?}"
                ));
            }
        }
        for (code, team) in &routing.district_teams {
            identifiers::MunicipalityCode::parse(code)
                .map_err(|e| format!("routing.district_teams.{code:?}: {e}"))?;
            let registered = self
                .clients
                .iter()
                .any(|c| &c.id == team && c.kind == auth::ClientKind::Municipality);
            if !registered {
                return Err(format!(
                    "routing.district_teams.{code:?} names {team:?}, which is not a registered municipality client"
                ));
            }
        }
        Ok(())
    }

    fn validate_consent(&self) -> Result<(), String> {
        let consent = &self.consent;
        if !(1..=100_000).contains(&consent.max_search_matches) {
            return Err(format!(
                "consent.max_search_matches must be between 1 and 100000, got {}",
                consent.max_search_matches
            ));
        }
        let defs = fhir::Definitions::r4();
        for rt in &consent.exempt_types {
            if !defs.is_resource_type(rt) {
                return Err(format!(
                    "consent.exempt_types: {rt:?} is not an R4 resource type"
                ));
            }
        }
        let policy = crate::disclosure::load_policy(self.profiles.extra_dir.as_deref())?;
        for (kind, purposes) in &consent.purposes {
            let name = format!("consent.purposes.{}", kind_code(*kind));
            if *kind == auth::ClientKind::Operator {
                return Err(format!(
                    "{name}: an operator client is never the recipient of a disclosure, so it has no purpose of use"
                ));
            }
            if !purposes.allowed.contains(&purposes.default) {
                return Err(format!(
                    "{name}: the default {:?} must be one of allowed {:?}",
                    purposes.default, purposes.allowed
                ));
            }
            for code in &purposes.allowed {
                let known = consent::Purpose::new(code)
                    .ok()
                    .is_some_and(|p| policy.purpose(&p).is_some());
                if !known {
                    return Err(format!(
                        "{name}: {code:?} is not a purpose of use configured in profiles/jp/consent/purposes.json"
                    ));
                }
            }
        }
        self.research.validate(&policy)?;
        for project in &self.research.projects {
            for id in &project.clients {
                let kind = self.clients.iter().find(|c| &c.id == id).map(|c| c.kind);
                if kind != Some(auth::ClientKind::ResearchProject) {
                    return Err(format!(
                        "research.projects[{}].clients: {id:?} must be a registered client of kind research-project",
                        project.id
                    ));
                }
            }
        }
        let audits = self.audit.reads != ReadAudit::Off || self.audit.writes != WriteAudit::Off;
        if audits && !self.fhir.resource_types.iter().any(|t| t == "AuditEvent") {
            return Err(
                "audit.reads or audit.writes is on but AuditEvent is not in fhir.resource_types: the trail could not be read (serve AuditEvent, or set both to \"off\")"
                    .into(),
            );
        }
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

/// The configuration spelling of a client kind (`clinic-emr`, …).
pub fn kind_code(kind: auth::ClientKind) -> &'static str {
    match kind {
        auth::ClientKind::ClinicEmr => "clinic-emr",
        auth::ClientKind::MedicalAssociation => "medical-association",
        auth::ClientKind::Municipality => "municipality",
        auth::ClientKind::PhrApp => "phr-app",
        auth::ClientKind::PortalAdapter => "portal-adapter",
        auth::ClientKind::ResearchProject => "research-project",
        auth::ClientKind::Operator => "operator",
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
    fn the_portal_is_off_by_default_and_checked_when_on() {
        let c = Config::load(None, env(&[])).unwrap();
        assert!(!c.portal.enabled);
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("MUSUBI__PORTAL__ENABLED", "true")],
                "portal: base_url is required",
            ),
            (
                &[
                    ("MUSUBI__PORTAL__ENABLED", "true"),
                    ("MUSUBI__PORTAL__BASE_URL", "https://portal.example"),
                    ("MUSUBI__PORTAL__CLIENT_ID", "musubi"),
                    (
                        "MUSUBI__PORTAL__REDIRECT_URI",
                        "https://gw.example/phr/v1/myna-portal/callback",
                    ),
                ],
                "exactly one of client_key_file and client_secret_file",
            ),
            (
                &[
                    ("MUSUBI__PORTAL__ENABLED", "true"),
                    ("MUSUBI__PORTAL__BASE_URL", "https://portal.example"),
                    ("MUSUBI__PORTAL__CLIENT_ID", "musubi"),
                    (
                        "MUSUBI__PORTAL__REDIRECT_URI",
                        "https://gw.example/phr/v1/myna-portal/callback",
                    ),
                    (
                        "MUSUBI__PORTAL__CLIENT_SECRET_FILE",
                        "/nonexistent/portal-secret",
                    ),
                ],
                "client_secret_file /nonexistent/portal-secret",
            ),
        ];
        for (pairs, expected) in cases {
            let err = Config::load(None, env(pairs)).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
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

    #[test]
    fn consent_defaults_give_each_kind_a_purpose() {
        let c = Config::load(None, env(&[])).unwrap();
        assert!(c.consent.enforce);
        assert_eq!(c.consent.fallback, ConsentFallback::BasePolicy);
        assert_eq!(c.audit.reads, ReadAudit::Sync);
        assert_eq!(c.audit.writes, WriteAudit::SameCommit);
        let cases = [
            (auth::ClientKind::ClinicEmr, "TREAT"),
            (auth::ClientKind::MedicalAssociation, "HPAYMT"),
            (auth::ClientKind::Municipality, "PUBHLTH"),
            (auth::ClientKind::PortalAdapter, "PATRQT"),
            (auth::ClientKind::PhrApp, "PATRQT"),
        ];
        for (kind, purpose) in cases {
            let purposes = c.consent.purposes_of(kind).unwrap();
            assert_eq!(purposes.default, purpose, "{kind:?}");
            assert!(purposes.allowed.contains(&purposes.default), "{kind:?}");
        }
        assert!(c.consent.purposes_of(auth::ClientKind::Operator).is_none());
        let c = Config::load(
            None,
            env(&[
                ("MUSUBI__CONSENT__PURPOSES__MUNICIPALITY__DEFAULT", "COC"),
                (
                    "MUSUBI__CONSENT__PURPOSES__MUNICIPALITY__ALLOWED",
                    "[\"COC\"]",
                ),
                ("MUSUBI__AUDIT__READS", "off"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.consent
                .purposes_of(auth::ClientKind::Municipality)
                .unwrap()
                .default,
            "COC"
        );
        // Kinds not configured keep their built-in purposes.
        assert_eq!(
            c.consent
                .purposes_of(auth::ClientKind::ClinicEmr)
                .unwrap()
                .default,
            "TREAT"
        );
        assert_eq!(c.audit.reads, ReadAudit::Off);
    }

    #[test]
    fn consent_and_audit_mistakes_are_reported() {
        let cases: [(&[(&str, &str)], &str); 7] = [
            (
                &[("MUSUBI__CONSENT__MAX_SEARCH_MATCHES", "0")],
                "consent.max_search_matches",
            ),
            (
                &[("MUSUBI__CONSENT__EXEMPT_TYPES", "[\"Audit\"]")],
                "consent.exempt_types",
            ),
            (
                &[
                    ("MUSUBI__CONSENT__PURPOSES__CLINIC-EMR__DEFAULT", "TREAT"),
                    (
                        "MUSUBI__CONSENT__PURPOSES__CLINIC-EMR__ALLOWED",
                        "[\"COC\"]",
                    ),
                ],
                "consent.purposes.clinic-emr",
            ),
            (
                &[
                    ("MUSUBI__CONSENT__PURPOSES__OPERATOR__DEFAULT", "TREAT"),
                    (
                        "MUSUBI__CONSENT__PURPOSES__OPERATOR__ALLOWED",
                        "[\"TREAT\"]",
                    ),
                ],
                "no purpose of use",
            ),
            (
                &[
                    ("MUSUBI__CONSENT__PURPOSES__MUNICIPALITY__DEFAULT", "NOPE"),
                    (
                        "MUSUBI__CONSENT__PURPOSES__MUNICIPALITY__ALLOWED",
                        "[\"NOPE\"]",
                    ),
                ],
                "purposes.json",
            ),
            (&[("MUSUBI__CONSENT__FALLBACK", "permit")], "fallback"),
            (
                &[("MUSUBI__FHIR__RESOURCE_TYPES", "[\"Patient\"]")],
                "AuditEvent",
            ),
        ];
        for (vars, expected) in cases {
            let err = Config::load(None, env(vars)).unwrap_err().to_string();
            assert!(err.contains(expected), "{vars:?}: {err}");
        }
        // With both trails off, AuditEvent need not be served.
        let ok = Config::load(
            None,
            env(&[
                ("MUSUBI__FHIR__RESOURCE_TYPES", "[\"Patient\"]"),
                ("MUSUBI__AUDIT__READS", "off"),
                ("MUSUBI__AUDIT__WRITES", "off"),
            ]),
        );
        assert!(ok.is_ok(), "{ok:?}");
    }
}
