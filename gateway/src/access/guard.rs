//! The bearer-token check in front of every FHIR and municipal route: a verified, unexpired
//! token of a registered client (bound to the presented client certificate when it says so),
//! within the client's rate limit. The caller is left in the request's extensions.

use std::sync::Arc;

use actix_web::HttpMessage as _;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use super::tls::PeerCertificate;
use super::{Caller, invalid_token, missing_token};
use crate::error::ApiError;
use crate::state::AppState;

/// Routes under the guarded scopes that stay public: SMART requires the CapabilityStatement and
/// the discovery document to be readable without a token.
fn is_public(path: &str) -> bool {
    matches!(
        path.trim_end_matches('/'),
        "/fhir/metadata" | "/fhir/.well-known/smart-configuration"
    )
}

pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if is_public(req.path()) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(ApiError::internal("the gateway state is missing").into());
    };
    match authenticate(&state, &req) {
        Ok(caller) => {
            req.extensions_mut().insert(Arc::new(caller));
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        Err(error) => {
            let response = crate::http::error_response(&error, None);
            Ok(req.into_response(response).map_into_boxed_body())
        }
    }
}

fn authenticate(state: &AppState, req: &ServiceRequest) -> Result<Caller, ApiError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(missing_token)?;
    let token = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(missing_token()),
    };
    let access = &state.access;
    let claims = access.verify_bearer(token)?;
    let client = access
        .registry
        .get(&claims.client_id)
        .ok_or_else(|| invalid_token(auth::AuthError::InvalidRequest("unknown client".into())))?;
    // RFC 8705 §3: a certificate-bound token is only good together with its certificate.
    if let Some(cnf) = &claims.cnf {
        let presented = req.conn_data::<PeerCertificate>();
        if presented.is_none_or(|peer| peer.thumbprint != cnf.x5t_s256) {
            return Err(invalid_token(auth::AuthError::InvalidRequest(
                "the token is bound to a client certificate that this connection did not present"
                    .into(),
            )));
        }
    }
    access.limits.check_client(&claims.client_id)?;
    Ok(Caller::new(client.client.kind, claims))
}
