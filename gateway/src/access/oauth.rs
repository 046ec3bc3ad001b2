//! The authorization server's HTTP endpoints: discovery (SMART and OpenID/RFC 8414 style), the
//! JWKS, the token endpoint (client_credentials, authorization_code with PKCE, refresh_token),
//! revocation, introspection, and the built-in parent sign-in page. The rules are the `auth`
//! crate's; this module parses forms, authenticates clients and shapes OAuth answers.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use auth::{AuthError, GrantType, ScopeSet};
use base64::Engine as _;
use futures_util::StreamExt as _;
use serde_json::json;

use super::tls::PeerCertificate;
use crate::state::AppState;

type State = web::Data<AppState>;

/// Largest form body the OAuth endpoints read (an assertion JWT fits many times over).
const MAX_FORM_BYTES: usize = 64 * 1024;
/// How long a signed-in user has to choose a child.
const SIGN_IN_TICKET_SECS: i64 = 300;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/.well-known/smart-configuration",
        web::get().to(smart_configuration),
    )
    .route(
        "/fhir/.well-known/smart-configuration",
        web::get().to(smart_configuration),
    )
    .route(
        "/.well-known/openid-configuration",
        web::get().to(openid_configuration),
    )
    .route(
        "/.well-known/oauth-authorization-server",
        web::get().to(openid_configuration),
    )
    .service(
        web::scope("/oauth")
            .route("/jwks", web::get().to(jwks))
            .route("/authorize", web::get().to(authorize_page))
            .route("/authorize", web::post().to(authorize_submit))
            .route("/token", web::post().to(token))
            .route("/revoke", web::post().to(revoke))
            .route("/introspect", web::post().to(introspect)),
    );
}

fn endpoint(state: &AppState, path: &str) -> String {
    format!("{}{path}", state.access.public_base)
}

fn scopes_supported() -> Vec<&'static str> {
    vec![
        "launch/patient",
        "fhirUser",
        "offline_access",
        "online_access",
        "patient/*.cruds",
        "patient/*.rs",
        "user/*.cruds",
        "user/*.rs",
        "system/*.cruds",
        "system/*.rs",
    ]
}

/// SMART App Launch 2.x, Conformance: `.well-known/smart-configuration`.
async fn smart_configuration(state: State) -> HttpResponse {
    let s = &state;
    HttpResponse::Ok().json(json!({
        "issuer": s.access.public_base,
        "jwks_uri": endpoint(s, "/oauth/jwks"),
        "authorization_endpoint": endpoint(s, "/oauth/authorize"),
        "token_endpoint": endpoint(s, "/oauth/token"),
        "introspection_endpoint": endpoint(s, "/oauth/introspect"),
        "revocation_endpoint": endpoint(s, "/oauth/revoke"),
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": scopes_supported(),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "tls_client_certificate_bound_access_tokens": true,
        "capabilities": [
            "launch-standalone", "authorize-post", "client-public",
            "client-confidential-symmetric", "client-confidential-asymmetric",
            "context-standalone-patient", "permission-offline", "permission-online",
            "permission-patient", "permission-user", "permission-v1", "permission-v2"
        ]
    }))
}

/// Authorization-server metadata (RFC 8414; the same fields OpenID discovery uses). Musubi
/// issues no id_tokens, so `openid` is not among the scopes.
async fn openid_configuration(state: State) -> HttpResponse {
    let s = &state;
    HttpResponse::Ok().json(json!({
        "issuer": s.access.public_base,
        "jwks_uri": endpoint(s, "/oauth/jwks"),
        "authorization_endpoint": endpoint(s, "/oauth/authorize"),
        "token_endpoint": endpoint(s, "/oauth/token"),
        "introspection_endpoint": endpoint(s, "/oauth/introspect"),
        "revocation_endpoint": endpoint(s, "/oauth/revoke"),
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": scopes_supported(),
        "tls_client_certificate_bound_access_tokens": true
    }))
}

async fn jwks(state: State) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(state.access.ring().jwks())
}

/// An OAuth error answer (RFC 6749 §5.2): JSON, never cached.
fn oauth_error(error: &AuthError, basic_challenge: bool) -> HttpResponse {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST);
    if status.is_server_error() {
        tracing::error!(%error, "authorization server failure");
    } else {
        tracing::info!(error = error.oauth_error(), reason = %error, "OAuth request refused");
    }
    let mut response = HttpResponse::build(status);
    response
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
    if status == StatusCode::UNAUTHORIZED && basic_challenge {
        response.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"musubi\""));
    }
    response.json(json!({
        "error": error.oauth_error(),
        "error_description": error.to_string(),
    }))
}

fn no_store_json(value: impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(value)
}

/// The form fields of a request, once each (RFC 6749 §3.2: parameters sent without a value
/// are treated as omitted; repeated parameters are refused).
struct Form(Vec<(String, String)>);

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    fn require(&self, name: &str) -> Result<&str, AuthError> {
        self.get(name)
            .ok_or_else(|| AuthError::InvalidRequest(format!("the parameter {name} is missing")))
    }

    fn check_unique(&self) -> Result<(), AuthError> {
        let mut seen = std::collections::HashSet::new();
        for (k, _) in &self.0 {
            if !seen.insert(k.as_str()) {
                return Err(AuthError::InvalidRequest(format!(
                    "the parameter {k} is repeated"
                )));
            }
        }
        Ok(())
    }
}

async fn read_form(req: &HttpRequest, mut payload: web::Payload) -> Result<Form, AuthError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(AuthError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded".into(),
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| AuthError::InvalidRequest(format!("unreadable body: {e}")))?;
        if body.len() + chunk.len() > MAX_FORM_BYTES {
            return Err(AuthError::InvalidRequest(format!(
                "the form exceeds {MAX_FORM_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let form = Form(
        form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    );
    form.check_unique()?;
    Ok(form)
}

/// How the client proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    SecretBasic,
    SecretPost,
    PrivateKeyJwt,
    Certificate,
    /// A public client: only its id (PKCE protects its codes).
    None,
}

struct Authenticated {
    client: auth::RegisteredClient,
    method: Method,
}

/// `client_id:client_secret` of an HTTP Basic header, each form-urlencoded (RFC 6749 §2.3.1).
fn basic_credentials(req: &HttpRequest) -> Result<Option<(String, String)>, AuthError> {
    let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let bad = || AuthError::InvalidRequest("malformed Basic credentials".into());
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let decode = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((decode(id), decode(secret))))
}

async fn authenticate_client(
    state: &State,
    req: &HttpRequest,
    form: &Form,
) -> Result<Authenticated, AuthError> {
    let access = &state.access;
    let basic = basic_credentials(req)?;
    let assertion = form.get("client_assertion");
    let post_secret = form.get("client_secret");
    let presented = [basic.is_some(), assertion.is_some(), post_secret.is_some()]
        .iter()
        .filter(|p| **p)
        .count();
    if presented > 1 {
        return Err(AuthError::InvalidRequest(
            "use exactly one client authentication method".into(),
        ));
    }
    let secret_check = |client_id: String, secret: String, method: Method| {
        let state = state.clone();
        async move {
            let client = web::block(move || {
                state
                    .access
                    .registry
                    .authenticate_secret(&client_id, &secret)
                    .cloned()
            })
            .await
            .map_err(|_| {
                AuthError::Unavailable("client authentication was interrupted".into())
            })??;
            Ok::<_, AuthError>(Authenticated { client, method })
        }
    };
    if let Some((client_id, secret)) = basic {
        if form.get("client_id").is_some_and(|id| id != client_id) {
            return Err(AuthError::InvalidRequest(
                "client_id differs from the Basic credentials".into(),
            ));
        }
        return secret_check(client_id, secret, Method::SecretBasic).await;
    }
    if let Some(assertion) = assertion {
        if form.get("client_assertion_type") != Some(auth::JWT_BEARER) {
            return Err(AuthError::InvalidRequest(format!(
                "client_assertion_type must be {}",
                auth::JWT_BEARER
            )));
        }
        let client = auth::verify_client_assertion(
            &access.registry,
            assertion,
            form.get("client_id"),
            &access.assertion_rules,
            &access.replay,
            time::OffsetDateTime::now_utc(),
        )?
        .clone();
        return Ok(Authenticated {
            client,
            method: Method::PrivateKeyJwt,
        });
    }
    let Some(client_id) = form.get("client_id").map(str::to_owned) else {
        return public_refresh_client(access, form);
    };
    if let Some(secret) = post_secret {
        return secret_check(client_id, secret.to_owned(), Method::SecretPost).await;
    }
    let client = access.registry.require(&client_id)?.clone();
    if let Some(peer) = req.conn_data::<PeerCertificate>()
        && client.client.credentials.certificate.is_some()
    {
        access
            .registry
            .authenticate_certificate(&client_id, &peer.der, &peer.subject_dn)
            .inspect_err(|_| {
                // The subject is not a secret, and operators need it to fix a registration.
                tracing::info!(%client_id, subject = %peer.subject_dn, "client certificate refused");
            })?;
        return Ok(Authenticated {
            client,
            method: Method::Certificate,
        });
    }
    if client.client.credentials.is_confidential() {
        return Err(AuthError::InvalidClient {
            client_id,
            reason: "a confidential client must authenticate".into(),
        });
    }
    Ok(Authenticated {
        client,
        method: Method::None,
    })
}

/// A public client's refresh request may name no client at all (SMART App Launch: public apps
/// send only `grant_type` and `refresh_token`); the client is the one the refresh token was
/// issued to, and only a public one may be found this way.
fn public_refresh_client(
    access: &super::AccessState,
    form: &Form,
) -> Result<Authenticated, AuthError> {
    let missing = || AuthError::InvalidRequest("the parameter client_id is missing".into());
    if form.get("grant_type") != Some("refresh_token") {
        return Err(missing());
    }
    let token = form.require("refresh_token")?;
    let (_, grant) =
        auth::GrantStore::peek_refresh(&access.grants, &auth::grants::token_hash(token))?
            .ok_or_else(|| AuthError::InvalidGrant("unknown refresh token".into()))?;
    let client = access.registry.require(&grant.client_id)?.clone();
    if client.client.credentials.is_confidential() {
        return Err(AuthError::InvalidClient {
            client_id: grant.client_id,
            reason: "a confidential client must authenticate".into(),
        });
    }
    Ok(Authenticated {
        client,
        method: Method::None,
    })
}

async fn token(state: State, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let result = async {
        let form = read_form(&req, payload).await?;
        let client = authenticate_client(&state, &req, &form).await?;
        state
            .access
            .limits
            .check_client(client.client.id())
            .map_err(|_| AuthError::Unavailable("the client exceeded its request rate".into()))?;
        issue_tokens(&state, &req, &form, &client)
    }
    .await;
    match result {
        Ok(response) => {
            tracing::info!(client_id = %response.1, grant_type = %response.2, "token issued");
            no_store_json(response.0)
        }
        Err(error) => oauth_error(&error, basic_credentials(&req).ok().flatten().is_some()),
    }
}

fn issue_tokens(
    state: &AppState,
    req: &HttpRequest,
    form: &Form,
    authenticated: &Authenticated,
) -> Result<(auth::TokenResponse, String, &'static str), AuthError> {
    let access = &state.access;
    let client = &authenticated.client;
    let now = time::OffsetDateTime::now_utc();
    let requested = form.get("scope").map(ScopeSet::parse).transpose()?;
    let (grant_type, mut claims, refresh_token) = match form.require("grant_type")? {
        "client_credentials" => {
            client.require_grant(GrantType::ClientCredentials)?;
            if authenticated.method == Method::None {
                return Err(AuthError::InvalidClient {
                    client_id: client.id().to_owned(),
                    reason: "client_credentials needs a confidential client".into(),
                });
            }
            let requested = requested.unwrap_or_else(|| client.scopes.clone());
            let granted = auth::grant(&requested, &client.scopes);
            if granted.is_empty() {
                return Err(AuthError::InvalidScope {
                    scope: requested.to_string(),
                    reason: format!("none of it is allowed to client {}", client.id()),
                });
            }
            let claims = auth::AccessClaims::new(
                &access.public_base,
                &access.fhir_base(),
                client.id(),
                client.id(),
                granted,
                now,
                access.access_lifetime_secs,
            );
            ("client_credentials", claims, None)
        }
        "authorization_code" => {
            client.require_grant(GrantType::AuthorizationCode)?;
            let code = auth::redeem_code(
                &access.grants,
                form.require("code")?,
                client.id(),
                form.require("redirect_uri")?,
                form.require("code_verifier")?,
                now,
            )?;
            let mut claims = auth::AccessClaims::new(
                &access.public_base,
                &access.fhir_base(),
                &code.user,
                client.id(),
                code.scope.clone(),
                now,
                access.access_lifetime_secs,
            );
            claims.patient = code.context.patient.clone();
            claims.fhir_user = code.context.fhir_user.clone();
            let wants_refresh = code
                .scope
                .iter()
                .any(|s| matches!(s, auth::Scope::OfflineAccess | auth::Scope::OnlineAccess));
            let refresh = if wants_refresh && client.allows_grant(GrantType::RefreshToken) {
                Some(auth::issue_refresh(
                    &access.grants,
                    &code,
                    now,
                    access.refresh_lifetime_secs,
                )?)
            } else {
                None
            };
            ("authorization_code", claims, refresh)
        }
        "refresh_token" => {
            client.require_grant(GrantType::RefreshToken)?;
            let (refresh, grant) = auth::rotate_refresh(
                &access.grants,
                form.require("refresh_token")?,
                client.id(),
                requested.as_ref(),
                now,
                access.refresh_lifetime_secs,
            )?;
            let mut claims = auth::AccessClaims::new(
                &access.public_base,
                &access.fhir_base(),
                &grant.user,
                client.id(),
                grant.scope.clone(),
                now,
                access.access_lifetime_secs,
            );
            claims.patient = grant.context.patient.clone();
            claims.fhir_user = grant.context.fhir_user.clone();
            ("refresh_token", claims, Some(refresh))
        }
        other => {
            return Err(AuthError::InvalidRequest(format!(
                "unsupported grant_type {other:?}"
            )));
        }
    };
    // RFC 8705 §3: a client registered with a certificate gets tokens bound to it.
    if client.client.credentials.certificate.is_some()
        && let Some(peer) = req.conn_data::<PeerCertificate>()
    {
        claims.cnf = Some(auth::Confirmation {
            x5t_s256: peer.thumbprint.clone(),
        });
    }
    let access_token = auth::issue(&access.ring(), &claims)?;
    Ok((
        auth::TokenResponse {
            access_token,
            token_type: "Bearer".into(),
            expires_in: claims.exp - claims.iat,
            scope: claims.scope.clone(),
            refresh_token,
            id_token: None,
            patient: claims.patient.clone(),
        },
        client.id().to_owned(),
        grant_type,
    ))
}

async fn revoke(state: State, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let result = async {
        let form = read_form(&req, payload).await?;
        let client = authenticate_client(&state, &req, &form).await?;
        let request = auth::RevocationRequest {
            token: form.require("token")?.to_owned(),
            token_type_hint: form.get("token_type_hint").map(str::to_owned),
        };
        let access = &state.access;
        auth::revoke(
            &access.grants,
            &access.ring(),
            &access.cache,
            &access.expected,
            client.client.id(),
            &request,
            time::OffsetDateTime::now_utc(),
        )
        .map(|revoked| (revoked, client.client.id().to_owned()))
    }
    .await;
    match result {
        Ok((revoked, client_id)) => {
            tracing::info!(%client_id, ?revoked, "token revocation");
            HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish()
        }
        Err(error) => oauth_error(&error, basic_credentials(&req).ok().flatten().is_some()),
    }
}

async fn introspect(state: State, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let result = async {
        let form = read_form(&req, payload).await?;
        let client = authenticate_client(&state, &req, &form).await?;
        if client.method == Method::None {
            return Err(AuthError::InvalidClient {
                client_id: client.client.id().to_owned(),
                reason: "introspection needs a confidential client".into(),
            });
        }
        let access = &state.access;
        auth::introspect(
            &access.grants,
            &access.ring(),
            &access.cache,
            &access.expected,
            form.require("token")?,
            time::OffsetDateTime::now_utc(),
        )
    }
    .await;
    match result {
        Ok(answer) => no_store_json(answer),
        Err(error) => oauth_error(&error, basic_credentials(&req).ok().flatten().is_some()),
    }
}

// ---------------------------------------------------------------------------------------------
// The built-in sign-in page (authorization_code for PHR apps acting for a parent).

/// The authorization request's parameters, checked.
struct AuthorizeRequest {
    client: auth::RegisteredClient,
    redirect_uri: String,
    state: Option<String>,
    scope: ScopeSet,
    code_challenge: String,
}

/// Where an authorization error goes: to the user's browser when the client or redirect URI
/// cannot be trusted (RFC 6749 §4.1.2.1), otherwise back to the client's redirect URI.
enum AuthorizeError {
    Page(String),
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

fn check_authorize(state: &AppState, form: &Form) -> Result<AuthorizeRequest, AuthorizeError> {
    let access = &state.access;
    let client_id = form
        .get("client_id")
        .ok_or_else(|| AuthorizeError::Page("the request names no client_id".into()))?;
    let client = access
        .registry
        .get(client_id)
        .ok_or_else(|| AuthorizeError::Page(format!("unknown client {client_id:?}")))?
        .clone();
    if !client.allows_grant(GrantType::AuthorizationCode) {
        return Err(AuthorizeError::Page(format!(
            "client {client_id:?} may not use the authorization code flow"
        )));
    }
    let redirect_uri = form
        .get("redirect_uri")
        .ok_or_else(|| AuthorizeError::Page("the request names no redirect_uri".into()))?
        .to_owned();
    client.require_redirect_uri(&redirect_uri).map_err(|_| {
        AuthorizeError::Page("the redirect_uri is not registered for this client".into())
    })?;
    let request_state = form.get("state").map(str::to_owned);
    let redirect = |error: &'static str, description: String| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: request_state.clone(),
        error,
        description,
    };
    if form.get("response_type") != Some("code") {
        return Err(redirect(
            "unsupported_response_type",
            "response_type must be code".into(),
        ));
    }
    if let Some(aud) = form.get("aud")
        && aud.trim_end_matches('/') != access.fhir_base()
    {
        return Err(redirect(
            "invalid_request",
            format!("aud must be this server's FHIR base {}", access.fhir_base()),
        ));
    }
    let code_challenge = form
        .get("code_challenge")
        .ok_or_else(|| redirect("invalid_request", "PKCE code_challenge is required".into()))?
        .to_owned();
    auth::pkce::require_s256(form.get("code_challenge_method"))
        .and_then(|_| auth::pkce::check_challenge(&code_challenge))
        .map_err(|e| redirect("invalid_request", e.to_string()))?;
    let requested = ScopeSet::parse(form.get("scope").unwrap_or(""))
        .map_err(|e| redirect("invalid_scope", e.to_string()))?;
    let scope = auth::grant(&requested, &client.scopes);
    if scope.is_empty() {
        return Err(redirect(
            "invalid_scope",
            "none of the requested scopes is allowed to this client".into(),
        ));
    }
    Ok(AuthorizeRequest {
        client,
        redirect_uri,
        state: request_state,
        scope,
        code_challenge,
    })
}

fn redirect_to(redirect_uri: &str, params: &[(&str, &str)]) -> HttpResponse {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        serializer.append_pair(k, v);
    }
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    HttpResponse::Found()
        .insert_header((
            header::LOCATION,
            format!("{redirect_uri}{separator}{}", serializer.finish()),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

fn authorize_failure(error: AuthorizeError) -> HttpResponse {
    match error {
        AuthorizeError::Page(message) => page(
            StatusCode::BAD_REQUEST,
            "Sign-in request refused",
            &format!("<p>{}</p>", escape_html(&message)),
        ),
        AuthorizeError::Redirect {
            redirect_uri,
            state,
            error,
            description,
        } => {
            let mut params = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(state) = &state {
                params.push(("state", state.as_str()));
            }
            redirect_to(&redirect_uri, &params)
        }
    }
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ))
        .body(format!(
            "<!doctype html><html lang=\"ja\"><head><meta charset=\"utf-8\"><title>{title}</title>\
             <style>body{{font-family:sans-serif;max-width:32em;margin:2em auto}}label{{display:block;margin:.6em 0}}</style>\
             </head><body><h1>{title}</h1>{body}</body></html>",
            title = escape_html(title)
        ))
}

/// The request's OAuth parameters as hidden fields, so the form posts them back.
fn hidden_fields(form: &Form) -> String {
    const CARRIED: [&str; 8] = [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
        "aud",
    ];
    CARRIED
        .iter()
        .filter_map(|name| form.get(name).map(|v| (name, v)))
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                escape_html(value)
            )
        })
        .collect()
}

fn sign_in_page(form: &Form, request: &AuthorizeRequest, failed: bool) -> HttpResponse {
    let notice = if failed {
        "<p role=\"alert\">ユーザー名またはパスワードが違います。 / The user name or password is wrong.</p>"
    } else {
        ""
    };
    page(
        if failed {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        },
        "Musubi サインイン / Sign in",
        &format!(
            "<p>{client} が次のアクセスを求めています / asks for: <code>{scope}</code></p>{notice}\
             <form method=\"post\" action=\"/oauth/authorize\">{hidden}\
             <label>ユーザー名 / User name <input name=\"username\" autocomplete=\"username\" required></label>\
             <label>パスワード / Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
             <button type=\"submit\">サインイン / Sign in</button></form>",
            client = escape_html(request.client.id()),
            scope = escape_html(&request.scope.to_string()),
            hidden = hidden_fields(form),
        ),
    )
}

async fn authorize_page(state: State, req: HttpRequest) -> HttpResponse {
    let form = Form(
        form_urlencoded::parse(req.query_string().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    );
    if let Err(error) = form.check_unique() {
        return authorize_failure(AuthorizeError::Page(error.to_string()));
    }
    match check_authorize(&state, &form) {
        Ok(request) => sign_in_page(&form, &request, false),
        Err(error) => authorize_failure(error),
    }
}

async fn authorize_submit(state: State, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let form = match read_form(&req, payload).await {
        Ok(form) => form,
        Err(error) => return authorize_failure(AuthorizeError::Page(error.to_string())),
    };
    let request = match check_authorize(&state, &form) {
        Ok(request) => request,
        Err(error) => return authorize_failure(error),
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // Either a ticket from the child-choice page, or a user name and password.
    let username = match form.get("ticket") {
        Some(ticket) => {
            let sign_ins = state
                .access
                .sign_ins
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match sign_ins.get(ticket) {
                Some((user, expires)) if *expires > now => user.clone(),
                _ => {
                    return authorize_failure(AuthorizeError::Page(
                        "the sign-in expired; start again from the app".into(),
                    ));
                }
            }
        }
        None => {
            let (Some(username), Some(password)) = (form.get("username"), form.get("password"))
            else {
                return sign_in_page(&form, &request, false);
            };
            if !password_matches(&state, username, password).await {
                tracing::info!(client_id = request.client.id(), "sign-in failed");
                return sign_in_page(&form, &request, true);
            }
            username.to_owned()
        }
    };
    let children = match super::children_of(&state, &username) {
        Ok(children) => children,
        Err(error) => {
            tracing::error!(?error, "cannot resolve the signed-in user's children");
            return authorize_failure(AuthorizeError::Page(
                "the server could not look up your children; try again later".into(),
            ));
        }
    };
    let chosen = match (form.get("patient"), children.len()) {
        (Some(patient), _) if children.contains_key(patient) => patient.to_owned(),
        (Some(_), _) => {
            return authorize_failure(AuthorizeError::Page(
                "that child is not linked to your account".into(),
            ));
        }
        (None, 1) => children.keys().next().cloned().unwrap_or_default(),
        (None, 0) => {
            return authorize_failure(AuthorizeError::Redirect {
                redirect_uri: request.redirect_uri,
                state: request.state,
                error: "access_denied",
                description: "no child is linked to this account".into(),
            });
        }
        (None, _) => return choose_child_page(&state, &form, &username, &children, now),
    };
    let related_person = children.get(&chosen).cloned().unwrap_or_default();
    let code_request = auth::CodeRequest {
        client_id: request.client.id().to_owned(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        user: username.clone(),
        scope: request.scope.clone(),
        context: auth::LaunchContext {
            patient: Some(chosen),
            fhir_user: Some(format!("RelatedPerson/{related_person}")),
        },
    };
    match auth::issue_code(
        &state.access.grants,
        code_request,
        time::OffsetDateTime::now_utc(),
    ) {
        Ok(code) => {
            tracing::info!(client_id = request.client.id(), "authorization code issued");
            let mut params = vec![("code", code.as_str())];
            if let Some(s) = &request.state {
                params.push(("state", s.as_str()));
            }
            redirect_to(&request.redirect_uri, &params)
        }
        Err(error) => authorize_failure(AuthorizeError::Redirect {
            redirect_uri: request.redirect_uri,
            state: request.state,
            error: "server_error",
            description: error.to_string(),
        }),
    }
}

async fn password_matches(state: &State, username: &str, password: &str) -> bool {
    // An unknown user costs the same Argon2 work as a known one, so timing does not tell
    // which user names exist.
    let hash = state
        .access
        .users
        .get(username)
        .map(|u| u.password_hash.clone());
    let known = hash.is_some();
    let hash = hash.unwrap_or_else(|| state.access.decoy_hash.clone());
    let password = password.to_owned();
    let verified = web::block(move || auth::verify_secret(&password, &hash))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(false);
    known && verified
}

fn choose_child_page(
    state: &AppState,
    form: &Form,
    username: &str,
    children: &std::collections::BTreeMap<String, String>,
    now: i64,
) -> HttpResponse {
    let ticket = uuid::Uuid::new_v4().to_string();
    state
        .access
        .sign_ins
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            ticket.clone(),
            (username.to_owned(), now + SIGN_IN_TICKET_SECS),
        );
    let options: String = children
        .keys()
        .enumerate()
        .map(|(i, id)| {
            let label = child_label(state, id);
            format!(
                "<label><input type=\"radio\" name=\"patient\" value=\"{id}\"{}> {}</label>",
                if i == 0 { " checked" } else { "" },
                escape_html(&label),
                id = escape_html(id),
            )
        })
        .collect();
    page(
        StatusCode::OK,
        "お子さまを選択 / Choose a child",
        &format!(
            "<form method=\"post\" action=\"/oauth/authorize\">{hidden}\
             <input type=\"hidden\" name=\"ticket\" value=\"{ticket}\">{options}\
             <button type=\"submit\">続ける / Continue</button></form>",
            hidden = hidden_fields(form),
        ),
    )
}

/// A child's name for the choice page (the id when the record has no name).
fn child_label(state: &AppState, id: &str) -> String {
    let name = state
        .store
        .read("Patient", id)
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_slice::<serde_json::Value>(&v.body).ok())
        .and_then(|p| {
            p.get("name")?.as_array()?.iter().find_map(|n| {
                n.get("text")
                    .and_then(|t| t.as_str())
                    .map(str::to_owned)
                    .or_else(|| {
                        let family = n.get("family").and_then(|f| f.as_str()).unwrap_or("");
                        let given: Vec<&str> = n
                            .get("given")
                            .and_then(|g| g.as_array())
                            .map(|g| g.iter().filter_map(|x| x.as_str()).collect())
                            .unwrap_or_default();
                        let full = format!("{family} {}", given.join(" ")).trim().to_owned();
                        (!full.is_empty()).then_some(full)
                    })
            })
        });
    name.unwrap_or_else(|| id.to_owned())
}
