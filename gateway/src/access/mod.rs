//! Who is calling and what they may do: the authorization server's state (clients, signing keys,
//! grants), the bearer-token check in front of every data route, and the scope and
//! patient-compartment decisions every interaction asks for (docs/access.md).
//!
//! The rules themselves live in the pure `auth` crate; this module owns the I/O around them:
//! key files, the clock, the store lookups that resolve a parent's children, HTTP headers.

mod compartment;
pub mod guard;
pub mod oauth;
pub mod ratelimit;
pub mod tls;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard};

use auth::{AccessClaims, AuthError, Context, Interaction, Restriction};
use serde_json::Value;

use crate::config::{Config, UserConfig};
use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;

pub use compartment::Compartments;

/// The identifier system linking a parent's sign-in account to RelatedPerson resources (one per
/// child): `RelatedPerson.identifier = {ACCOUNT_SYSTEM}|<username>`.
pub const ACCOUNT_SYSTEM: &str = "https://musubi.example.org/fhir/IdSystem/account";

/// The authorization server and token checker of one gateway process.
pub struct AccessState {
    pub registry: auth::Registry,
    ring: RwLock<auth::KeyRing>,
    pub cache: auth::VerifyCache,
    /// Identity providers whose access tokens are accepted besides Musubi's own.
    pub external: auth::ExternalIssuers,
    pub grants: auth::MemoryGrants,
    pub replay: auth::ReplayCache,
    pub expected: auth::Expected,
    pub assertion_rules: auth::AssertionRules,
    /// `https://host:port`, without a trailing slash: the issuer.
    pub public_base: String,
    pub users: HashMap<String, UserConfig>,
    pub operations: auth::OperationPermissions,
    pub access_lifetime_secs: i64,
    pub refresh_lifetime_secs: i64,
    pub limits: ratelimit::Limits,
    /// Verified instead of a missing user's hash, so failures take equally long.
    pub(crate) decoy_hash: String,
    /// Sign-ins waiting for the user to choose a child: ticket → (username, expiry).
    pub(crate) sign_ins: Mutex<HashMap<String, (String, i64)>>,
}

impl AccessState {
    /// Build from the configuration; `public_base` is the URL clients reach this server at.
    /// Creates the signing key on first start.
    pub fn load(config: &Config, public_base: &str) -> Result<AccessState, String> {
        let registry = auth::Registry::new(config.clients.clone()).map_err(|e| e.to_string())?;
        let ring = load_key_ring(config)?;
        let public_base = public_base.trim_end_matches('/').to_owned();
        let external =
            auth::ExternalIssuers::new(config.auth.trusted_issuers.clone(), &public_base)
                .map_err(|e| e.to_string())?;
        let mut expected = auth::Expected::new(&public_base, &format!("{public_base}/fhir"));
        expected.leeway_seconds = config.auth.leeway_secs;
        let mut assertion_rules = auth::AssertionRules::new(&format!("{public_base}/oauth/token"));
        assertion_rules.leeway_seconds = config.auth.leeway_secs;
        Ok(AccessState {
            registry,
            ring: RwLock::new(ring),
            cache: auth::VerifyCache::new(config.auth.verify_cache_entries),
            external,
            grants: auth::MemoryGrants::new(),
            replay: auth::ReplayCache::new(100_000),
            expected,
            assertion_rules,
            public_base,
            users: config
                .auth
                .users
                .iter()
                .map(|u| (u.username.clone(), u.clone()))
                .collect(),
            operations: config.auth.operations.clone(),
            access_lifetime_secs: config.auth.access_token_lifetime_secs,
            refresh_lifetime_secs: config.auth.refresh_token_lifetime_secs,
            limits: ratelimit::Limits::new(&config.rate_limits),
            decoy_hash: auth::hash_secret(&uuid::Uuid::new_v4().to_string())
                .map_err(|e| e.to_string())?,
            sign_ins: Mutex::new(HashMap::new()),
        })
    }

    pub fn ring(&self) -> RwLockReadGuard<'_, auth::KeyRing> {
        self.ring.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The FHIR base URL: every access token's audience.
    pub fn fhir_base(&self) -> String {
        format!("{}/fhir", self.public_base)
    }

    /// Verify a bearer token (cached until it expires) and find its client. A token of a
    /// trusted identity provider is verified with that provider's keys; its client must be
    /// registered here too, and its scopes are cut down to the client's registered ones.
    pub fn verify_bearer(&self, token: &str) -> Result<Arc<AccessClaims>, ApiError> {
        let now = time::OffsetDateTime::now_utc();
        if !self.external.is_empty() && self.external.trusts(token) {
            let mut claims = self
                .external
                .verify(token, now, self.expected.leeway_seconds)
                .map_err(invalid_token)?;
            let client = self.registry.get(&claims.client_id).ok_or_else(|| {
                invalid_token(AuthError::InvalidRequest(format!(
                    "client {} of issuer {} is not registered here",
                    claims.client_id, claims.iss
                )))
            })?;
            claims.scope = auth::grant(&claims.scope, &client.scopes);
            return Ok(Arc::new(claims));
        }
        let claims = self
            .cache
            .verify(&self.ring(), token, now, &self.expected)
            .map_err(invalid_token)?;
        if self.registry.get(&claims.client_id).is_none() {
            return Err(invalid_token(AuthError::InvalidRequest(
                "the token's client is no longer registered".into(),
            )));
        }
        Ok(claims)
    }

    /// Forget expired cache entries, replay records and grants (called periodically).
    pub fn purge(&self) {
        let now = time::OffsetDateTime::now_utc();
        self.cache.purge(now);
        if let Err(error) = auth::GrantStore::purge(&self.grants, now.unix_timestamp()) {
            tracing::warn!(%error, "purging expired grants failed");
        }
        let mut sign_ins = self.sign_ins.lock().unwrap_or_else(|p| p.into_inner());
        sign_ins.retain(|_, (_, expires)| *expires > now.unix_timestamp());
    }
}

fn load_key_ring(config: &Config) -> Result<auth::KeyRing, String> {
    let current_path = config
        .auth
        .signing_key_file
        .clone()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| config.storage.data_dir.join("auth").join("signing-key.pem"));
    let current = match std::fs::read_to_string(&current_path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let pem = auth::KeyRing::generate()
                .to_pem()
                .map_err(|e| e.to_string())?
                .current;
            write_private(&current_path, &pem)?;
            tracing::info!(path = %current_path.display(), "created a new token signing key");
            pem
        }
        Err(error) => {
            return Err(format!(
                "cannot read the signing key {}: {error}",
                current_path.display()
            ));
        }
    };
    let previous: Vec<String> = config
        .auth
        .previous_key_files
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read the retired key {}: {e}", p.display()))
        })
        .collect::<Result<_, _>>()?;
    let previous: Vec<&str> = previous.iter().map(String::as_str).collect();
    auth::KeyRing::from_pem(&current, &previous)
        .map_err(|e| format!("signing key {}: {e}", current_path.display()))
}

/// Write a private key readable by the owner only.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A 401 for a token that failed verification (RFC 6750 §3.1 `invalid_token`).
pub fn invalid_token(error: AuthError) -> ApiError {
    let message = error.to_string();
    let mut api = ApiError::new(
        ErrorKind::Unauthorized,
        format!("the access token was refused: {message}"),
    );
    api.challenge = Some(format!(
        "Bearer realm=\"musubi\", error=\"invalid_token\", error_description=\"{}\"",
        message.replace(['"', '\\'], "'")
    ));
    api
}

/// A 401 for a request without credentials (RFC 6750 §3: no error code).
pub fn missing_token() -> ApiError {
    let mut api = ApiError::new(
        ErrorKind::Unauthorized,
        "this route needs an access token: send `Authorization: Bearer <token>` (get one at /oauth/token; see /.well-known/smart-configuration)",
    );
    api.challenge = Some("Bearer realm=\"musubi\"".into());
    api
}

/// A 403 naming the scope that would have permitted the request (RFC 6750 §3.1).
pub fn insufficient_scope(missing: &str, message: String) -> ApiError {
    let mut api = ApiError::new(ErrorKind::Forbidden, message);
    api.challenge = Some(format!(
        "Bearer realm=\"musubi\", error=\"insufficient_scope\", scope=\"{missing}\""
    ));
    api
}

/// An authenticated client, and the person it acts for when a user signed in.
pub struct Caller {
    pub client_id: String,
    pub kind: auth::ClientKind,
    pub claims: Arc<AccessClaims>,
    /// The Patient ids a parent's token reaches, resolved at most once per request.
    compartment: OnceLock<Arc<BTreeSet<String>>>,
}

impl Caller {
    pub fn new(kind: auth::ClientKind, claims: Arc<AccessClaims>) -> Caller {
        Caller {
            client_id: claims.client_id.clone(),
            kind,
            claims,
            compartment: OnceLock::new(),
        }
    }

    /// A parent signed in through a PHR app: their FHIR identity is a RelatedPerson.
    fn is_parent(&self) -> bool {
        self.claims
            .fhir_user
            .as_deref()
            .is_some_and(|u| u.starts_with("RelatedPerson/"))
    }

    /// The patients this caller's patient/user scopes reach: a parent's children linked by
    /// active RelatedPerson resources (looked up now, so an unlinked child is unreachable from
    /// the next request on), or else the launch patient alone.
    fn compartment(&self, state: &AppState) -> Result<Arc<BTreeSet<String>>, ApiError> {
        if let Some(set) = self.compartment.get() {
            return Ok(set.clone());
        }
        let set = if self.is_parent() {
            Arc::new(children_of(state, &self.claims.sub)?.into_keys().collect())
        } else {
            Arc::new(self.claims.patient.iter().cloned().collect())
        };
        Ok(self.compartment.get_or_init(|| set).clone())
    }
}

/// The Patient ids linked to a sign-in account through active RelatedPerson resources, each with
/// the id of the RelatedPerson that links it.
pub fn children_of(
    state: &AppState,
    account: &str,
) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
    let links = crate::domain::search_all(
        state.store.as_ref(),
        "RelatedPerson",
        "identifier",
        &format!("{ACCOUNT_SYSTEM}|{account}"),
    )?;
    let mut children = std::collections::BTreeMap::new();
    for related in &links {
        if related.get("active").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        if let (Some(id), Some(link)) = (
            related
                .pointer("/patient/reference")
                .and_then(Value::as_str)
                .and_then(|r| r.rsplit_once("Patient/"))
                .map(|(_, id)| id)
                .filter(|id| !id.is_empty() && !id.contains('/')),
            related.get("id").and_then(Value::as_str),
        ) {
            children
                .entry(id.to_owned())
                .or_insert_with(|| link.to_owned());
        }
    }
    Ok(children)
}

/// On whose behalf an interaction runs.
#[derive(Clone)]
pub enum Access {
    /// The gateway itself (start-up, command-line imports): no restriction.
    Internal,
    Caller(Arc<Caller>),
    /// No authenticated caller: every data interaction is refused.
    Nobody,
}

/// What an interaction on one resource type may touch.
#[derive(Debug, Clone)]
pub struct Grant {
    resource_type: String,
    /// Patient ids when only the patient compartment may be touched.
    compartment: Option<Arc<BTreeSet<String>>>,
    /// Granular-scope conjunctions of which one must hold.
    restriction: Restriction,
}

impl Access {
    pub fn caller(&self) -> Option<&Caller> {
        match self {
            Access::Caller(caller) => Some(caller),
            _ => None,
        }
    }

    /// The client id for logs and audit.
    pub fn client_id(&self) -> &str {
        match self {
            Access::Internal => "musubi",
            Access::Caller(caller) => &caller.client_id,
            Access::Nobody => "anonymous",
        }
    }

    /// May this caller perform `interaction` on `resource_type` at all? The answer says which
    /// part of the data it may touch.
    pub fn permit(
        &self,
        state: &AppState,
        interaction: Interaction,
        resource_type: &str,
    ) -> Result<Grant, ApiError> {
        let caller = match self {
            Access::Internal => return Ok(Grant::everything(resource_type)),
            Access::Nobody => return Err(missing_token()),
            Access::Caller(caller) => caller,
        };
        let (context, restriction) = match auth::authorize(
            &caller.claims.scope,
            interaction,
            resource_type,
        ) {
            auth::Decision::Permit {
                context,
                restriction,
            } => (context, restriction),
            auth::Decision::Deny { missing } => {
                return Err(insufficient_scope(
                    &missing,
                    format!(
                        "the access token does not allow this {interaction:?} on {resource_type}: it needs the scope {missing}"
                    ),
                ));
            }
        };
        // An operator reads no patient data, whatever its scopes say: it is never a recipient.
        if caller.kind == auth::ClientKind::Operator
            && !(Compartments::r4().is_shared(resource_type)
                && matches!(interaction, Interaction::Read | Interaction::Search))
        {
            return Err(ApiError::new(
                ErrorKind::Forbidden,
                format!(
                    "an operator client may only read and search types that hold no patient data through /fhir, not {} {resource_type}: it works through /routing/v1",
                    format!("{interaction:?}").to_lowercase()
                ),
            ));
        }
        // user/ scopes of a signed-in parent reach what the parent may see: their children.
        let compartment = match context {
            Context::System => None,
            Context::User if !caller.is_parent() => None,
            Context::Patient | Context::User => {
                let compartments = Compartments::r4();
                if compartments.is_member_type(resource_type) {
                    Some(caller.compartment(state)?)
                } else if resource_type == "Subscription" && interaction != Interaction::Search {
                    // An app registering for its own children's records: the patient named in
                    // the criteria must be in the compartment (see `Grant::allows`).
                    Some(caller.compartment(state)?)
                } else if compartments.is_shared(resource_type)
                    && matches!(interaction, Interaction::Read | Interaction::Search)
                {
                    None
                } else {
                    return Err(ApiError::new(
                        ErrorKind::Forbidden,
                        format!(
                            "{resource_type} is outside the patient compartment: a patient-context token cannot {} it",
                            format!("{interaction:?}").to_lowercase()
                        ),
                    ));
                }
            }
        };
        Ok(Grant {
            resource_type: resource_type.to_owned(),
            compartment,
            restriction,
        })
    }

    /// The routing operator's routes (`/routing/v1`: month close, deliveries, building files
    /// and digests): only an operator client, and only with every interaction on Task granted
    /// by `system/` scopes (`system/Task.cruds`). The scopes are asked directly: [`permit`]
    /// refuses an operator Tasks, which it may not read through /fhir.
    ///
    /// [`permit`]: Access::permit
    pub fn permit_operator(&self) -> Result<(), ApiError> {
        let caller = match self {
            Access::Internal => return Ok(()),
            Access::Nobody => return Err(missing_token()),
            Access::Caller(caller) => caller,
        };
        // A token naming a user or patient (from an external provider) acts for a person.
        let for_a_person = caller.claims.fhir_user.is_some() || caller.claims.patient.is_some();
        if caller.kind != auth::ClientKind::Operator || for_a_person {
            return Err(ApiError::new(
                ErrorKind::Forbidden,
                format!(
                    "the routing operator routes are for operator clients (kind = \"operator\") with system/Task.cruds; client {} is a {} client",
                    caller.client_id,
                    crate::config::kind_code(caller.kind)
                ),
            ));
        }
        for interaction in [
            Interaction::Create,
            Interaction::Read,
            Interaction::Update,
            Interaction::Delete,
            Interaction::Search,
        ] {
            match auth::authorize(&caller.claims.scope, interaction, "Task") {
                auth::Decision::Permit {
                    context: Context::System,
                    restriction: Restriction::None,
                } => {}
                _ => {
                    return Err(insufficient_scope(
                        "system/Task.cruds",
                        "the routing operator routes need every interaction on Task: the scope system/Task.cruds".to_owned(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Permit an operation, by the interaction the configuration says it counts as.
    pub fn permit_operation(
        &self,
        state: &AppState,
        operation: &str,
        resource_type: &str,
    ) -> Result<Grant, ApiError> {
        let interaction =
            match self {
                Access::Caller(_) => state.access.operations.interaction(operation).ok_or_else(
                    || {
                        ApiError::new(
                            ErrorKind::Forbidden,
                            format!(
                                "the operation {operation} is not open to clients (auth.operations)"
                            ),
                        )
                    },
                )?,
                _ => Interaction::Read,
            };
        self.permit(state, interaction, resource_type)
    }

    /// The compartment parameters for searches behind writes (conditional create, update,
    /// delete): whichever interaction the caller may perform on the type, its compartment.
    pub fn compartment_params(
        &self,
        state: &AppState,
        resource_type: &str,
    ) -> Result<Vec<(String, String)>, ApiError> {
        let mut last_error = None;
        for interaction in [
            Interaction::Search,
            Interaction::Read,
            Interaction::Create,
            Interaction::Update,
            Interaction::Delete,
        ] {
            match self.permit(state, interaction, resource_type) {
                Ok(grant) => return grant.compartment_params(),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(missing_token))
    }

    /// The municipal adapter moves whole registers: it needs unrestricted scopes on the Patient
    /// and record types (writes for imports, search for exports), and a municipality's client
    /// acts only for its own local-government code.
    pub fn permit_municipal(
        &self,
        state: &AppState,
        municipality: &str,
        record_type: &str,
        write: bool,
    ) -> Result<(), ApiError> {
        let interactions: &[Interaction] = if write {
            &[Interaction::Create, Interaction::Update]
        } else {
            &[Interaction::Search]
        };
        for resource_type in ["Patient", record_type] {
            for interaction in interactions {
                if !self
                    .permit(state, *interaction, resource_type)?
                    .is_unrestricted()
                {
                    return Err(ApiError::new(
                        ErrorKind::Forbidden,
                        "the municipal adapter needs system/ scopes without compartment or granular restrictions",
                    ));
                }
            }
        }
        if let Access::Caller(caller) = self
            && caller.kind == auth::ClientKind::Municipality
        {
            let own = state
                .access
                .registry
                .get(&caller.client_id)
                .and_then(|c| c.client.municipality_code.clone());
            if own.as_deref() != Some(municipality) {
                return Err(ApiError::new(
                    ErrorKind::Forbidden,
                    format!(
                        "client {} acts for municipality {}, not {municipality}",
                        caller.client_id,
                        own.as_deref().unwrap_or("(none)")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether a resource of another type (an `_include`d one) may be shown to this caller.
    pub fn may_see(&self, state: &AppState, resource_type: &str, resource: &Value) -> bool {
        self.permit(state, Interaction::Read, resource_type)
            .is_ok_and(|grant| grant.allows(resource))
    }

    /// Whether system- or type-level history may be listed: it spans every resource, so
    /// compartments and granular scopes cannot be applied to its totals.
    pub fn permit_history(
        &self,
        state: &AppState,
        resource_type: Option<&str>,
    ) -> Result<(), ApiError> {
        let types: Vec<&str> = match resource_type {
            Some(rt) => vec![rt],
            None => state
                .config
                .fhir
                .resource_types
                .iter()
                .map(String::as_str)
                .collect(),
        };
        for rt in types {
            let grant = self.permit(state, Interaction::Search, rt)?;
            if grant.compartment.is_some() || grant.restriction != Restriction::None {
                return Err(ApiError::new(
                    ErrorKind::Forbidden,
                    "type and system history need an unrestricted user/ or system/ search scope; patient-context tokens read the history of one resource at a time",
                ));
            }
        }
        Ok(())
    }
}

impl Grant {
    fn everything(resource_type: &str) -> Grant {
        Grant {
            resource_type: resource_type.to_owned(),
            compartment: None,
            restriction: Restriction::None,
        }
    }

    /// Neither a compartment nor granular scopes narrow it.
    pub fn is_unrestricted(&self) -> bool {
        self.compartment.is_none() && self.restriction == Restriction::None
    }

    /// Whether a stored (or about to be stored) resource of this grant's type lies inside it.
    pub fn allows(&self, resource: &Value) -> bool {
        if let Some(patients) = &self.compartment {
            let inside = if self.resource_type == "Subscription" {
                subscription_patient(resource).is_some_and(|p| patients.contains(&p))
            } else {
                Compartments::r4().contains(&self.resource_type, resource, patients)
            };
            if !inside {
                return false;
            }
        }
        match &self.restriction {
            Restriction::None => true,
            Restriction::AnyOf(alternatives) => alternatives.iter().any(|conjunction| {
                compartment::matches(&self.resource_type, resource, conjunction)
            }),
        }
    }

    /// Search parameters that narrow a search to this grant (all must hold). A patient token
    /// searches its compartment; granular scopes add their parameters.
    pub fn search_params(&self) -> Result<Vec<(String, String)>, ApiError> {
        let mut params = Vec::new();
        if let Some(patients) = &self.compartment {
            if patients.is_empty() {
                return Err(ApiError::new(
                    ErrorKind::Forbidden,
                    "no patient is linked to this token (for a parent: no active RelatedPerson links the account to a child)",
                ));
            }
            params.push(Compartments::r4().search_param(&self.resource_type, patients));
        }
        match &self.restriction {
            Restriction::None => {}
            Restriction::AnyOf(alternatives) => match alternatives.as_slice() {
                [only] => params.extend(only.iter().cloned()),
                _ => {
                    return Err(ApiError::new(
                        ErrorKind::Forbidden,
                        format!(
                            "several granular scopes permit searching {}: search with the parameters of one of them",
                            self.resource_type
                        ),
                    ));
                }
            },
        }
        Ok(params)
    }

    /// The part of this grant a search always needs (the compartment, not granular scopes):
    /// for conditional writes, whose matches must never come from outside it.
    pub fn compartment_params(&self) -> Result<Vec<(String, String)>, ApiError> {
        Grant {
            restriction: Restriction::None,
            ..self.clone()
        }
        .search_params()
    }

    /// Refuse a resource outside the grant, as if it did not exist (so its existence does not
    /// leak across families).
    pub fn require(&self, resource: &Value, what: impl FnOnce() -> String) -> Result<(), ApiError> {
        if self.allows(resource) {
            Ok(())
        } else {
            Err(ApiError::not_found(what()))
        }
    }

    /// Refuse a Patient outside this grant's compartment, whatever type the grant is for, as if
    /// it did not exist: for routes that name the patient in their path (the PHR API). Granular
    /// scopes narrow the records, not the patient, so they are not applied here.
    pub fn require_patient(
        &self,
        patient: &Value,
        what: impl FnOnce() -> String,
    ) -> Result<(), ApiError> {
        match &self.compartment {
            Some(patients) if !Compartments::r4().contains("Patient", patient, patients) => {
                Err(ApiError::not_found(what()))
            }
            _ => Ok(()),
        }
    }

    /// Refuse writing a resource that would land outside the grant.
    pub fn require_write(&self, resource: &Value) -> Result<(), ApiError> {
        if self.allows(resource) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorKind::Forbidden,
                format!(
                    "this {} would lie outside what the token may write (its patient compartment or granular scopes)",
                    self.resource_type
                ),
            ))
        }
    }
}

/// The patient a Subscription's criteria name (`Immunization?patient=Patient/x` or
/// `…?patient=x`): what places it in a compartment. Criteria naming no single patient place it
/// in none.
fn subscription_patient(subscription: &Value) -> Option<String> {
    let criteria = subscription.get("criteria")?.as_str()?;
    let (_, query) = criteria.split_once('?')?;
    let mut patients = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "patient" || k == "subject")
        .map(|(_, v)| v.trim_start_matches("Patient/").to_owned());
    let patient = patients.next()?;
    (patients.next().is_none() && !patient.is_empty() && !patient.contains([',', '/']))
        .then_some(patient)
}
