//! HTTPS with rustls (ring provider, no OpenSSL), optional or required client certificates for
//! mutual TLS (RFC 8705), and the presented certificate made available to every request.

use std::any::Any;
use std::sync::Arc;

use actix_web::dev::Extensions;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ClientCertificates, TlsConfig};

/// The client certificate of the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct PeerCertificate {
    pub der: Vec<u8>,
    /// RFC 4514 string (last RDN first, comma-separated), e.g. `CN=clinic-a,O=Example,C=JP`:
    /// what `openssl x509 -noout -subject -nameopt RFC2253` prints.
    pub subject_dn: String,
    /// `x5t#S256` (RFC 8705 §3.1).
    pub thumbprint: String,
}

impl PeerCertificate {
    pub fn from_der(der: &[u8]) -> PeerCertificate {
        PeerCertificate {
            der: der.to_vec(),
            subject_dn: subject_dn(der).unwrap_or_default(),
            thumbprint: auth::certificate_thumbprint(der),
        }
    }
}

fn subject_dn(der: &[u8]) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let mut parts: Vec<String> = Vec::new();
    for rdn in certificate.subject().iter() {
        let attributes: Vec<String> = rdn
            .iter()
            .map(|attribute| {
                let name = x509_parser::objects::oid2abbrev(attribute.attr_type(), registry)
                    .map(str::to_owned)
                    .unwrap_or_else(|_| attribute.attr_type().to_id_string());
                let value = attribute.as_str().unwrap_or("");
                format!("{name}={}", escape_dn_value(value))
            })
            .collect();
        parts.push(attributes.join("+"));
    }
    parts.reverse();
    Some(parts.join(","))
}

/// RFC 4514 §2.4 escaping of an attribute value.
fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let edge =
            (i == 0 && (c == ' ' || c == '#')) || (i + 1 == value.chars().count() && c == ' ');
        if edge || matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Stash the client certificate of a TLS connection where handlers find it
/// (`HttpRequest::conn_data::<PeerCertificate>()`).
pub fn on_connect(connection: &dyn Any, extensions: &mut Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    if let Some(stream) = connection.downcast_ref::<Tls>() {
        let (_, session) = stream.get_ref();
        if let Some(first) = session.peer_certificates().and_then(|c| c.first()) {
            extensions.insert(PeerCertificate::from_der(first.as_ref()));
        }
    }
}

fn read_pem_certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certificates: Vec<_> = rustls_pemfile::certs(&mut std::io::BufReader::new(file))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not PEM certificates: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certificates)
}

fn read_private_key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut std::io::BufReader::new(file))
        .map_err(|e| format!("{} is not a PEM private key: {e}", path.display()))?
        .ok_or_else(|| format!("{} holds no private key", path.display()))
}

/// The rustls server configuration for `[tls]`.
pub fn server_config(config: &TlsConfig) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match (config.client_certificates, &config.client_ca_file) {
        (ClientCertificates::None, _) | (_, None) => builder.with_no_client_auth(),
        (mode, Some(ca_file)) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in read_pem_certificates(ca_file)? {
                roots
                    .add(certificate)
                    .map_err(|e| format!("{}: {e}", ca_file.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientCertificates::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("TLS client verification: {e}"))?,
            )
        }
    };
    let mut server = builder
        .with_single_cert(
            read_pem_certificates(&config.cert_file)?,
            read_private_key(&config.key_file)?,
        )
        .map_err(|e| format!("TLS server certificate: {e}"))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::escape_dn_value;

    #[test]
    fn dn_values_are_escaped_as_rfc_4514_says() {
        assert_eq!(escape_dn_value("Example Clinic"), "Example Clinic");
        assert_eq!(escape_dn_value("A, Inc."), "A\\, Inc.");
        assert_eq!(escape_dn_value(" lead"), "\\ lead");
        assert_eq!(escape_dn_value("#x"), "\\#x");
    }
}
