//! Outbound TLS: the two connectors a delivery uses and why a verified handshake failed.
//!
//! Opportunistic STARTTLS (any destination) encrypts without checking the certificate, as
//! RFC 7435 allows: a failed check must not push mail into the clear. A `delivery.require_tls`
//! domain gets the verified connector: a chain to the trust roots (webpki-roots, plus the PEM
//! roots of `delivery.tls_ca_file`), the MX host name matching, not expired; anything else
//! is no delivery (a temporary failure, so the message stays queued until `max_age`).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, RootCertStore};
use thiserror::Error;
use tokio_rustls::TlsConnector;

#[derive(Debug, Error)]
pub enum TlsSetupError {
    #[error("delivery.tls_ca_file {path}: {why}")]
    CaFile { path: String, why: String },
    #[error("outbound TLS setup: {0}")]
    Setup(String),
}

/// The connectors outbound deliveries choose from.
pub struct Connectors {
    /// Encrypts, checks nothing (opportunistic STARTTLS).
    pub opportunistic: TlsConnector,
    /// Checks the chain, the host name and the validity period.
    pub verified: TlsConnector,
}

impl Connectors {
    pub fn new(ca_file: Option<&Path>) -> Result<Self, TlsSetupError> {
        // mail-send builds this one with the process default provider.
        crate::install_crypto_provider();
        let opportunistic = mail_send::smtp::tls::build_tls_connector(true)
            .map_err(|e| TlsSetupError::Setup(e.to_string()))?;
        Ok(Connectors {
            opportunistic,
            verified: verified_connector(ca_file)?,
        })
    }
}

/// The certificates of a PEM file (at least one), or why not, in words naming the problem
/// (used for `delivery.tls_ca_file` here and by `check-config`).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}

/// Checks `delivery.tls_ca_file` as [`Connectors::new`] reads it (readable, PEM, at least one
/// certificate, each usable as a trust root); returns how many certificates it holds.
pub fn check_ca_file(path: &Path) -> Result<usize, TlsSetupError> {
    let store = roots(Some(path))?;
    Ok(store.len() - webpki_roots::TLS_SERVER_ROOTS.len())
}

/// A PEM reading error in words: the file could not be read, or what in it is wrong.
pub fn pem_error(e: pem::Error) -> String {
    match e {
        pem::Error::Io(e) => e.to_string(),
        pem::Error::NoItemsFound => "no PEM item in it".into(),
        e => format!("not valid PEM: {e}"),
    }
}

/// The trust roots: webpki-roots and, for tests or a private CA, the certificates of `ca_file`.
pub fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let Some(path) = ca_file else {
        return Ok(roots);
    };
    let err = |why: String| TlsSetupError::CaFile {
        path: path.display().to_string(),
        why,
    };
    for cert in read_certificates(path).map_err(err)? {
        roots.add(cert).map_err(|e| err(e.to_string()))?;
    }
    Ok(roots)
}

/// A client configuration that verifies the chain to `roots`, the name and the validity
/// period, built with the process's one provider ([`crate::crypto_provider`]).
pub fn verified_config(roots: RootCertStore) -> Result<rustls::ClientConfig, TlsSetupError> {
    Ok(
        rustls::ClientConfig::builder_with_provider(crate::crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError::Setup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn verified_connector(ca_file: Option<&Path>) -> Result<TlsConnector, TlsSetupError> {
    let config = verified_config(roots(ca_file)?)?;
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Why a verified STARTTLS failed, in words that name no host (rustls' own error texts for
/// a wrong name list the names the certificate holds).
pub fn why_unverified(e: &mail_send::Error) -> &'static str {
    let rustls_error = match e {
        mail_send::Error::Tls(e) => Some(&**e),
        mail_send::Error::Io(e) => e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()),
        mail_send::Error::Timeout => return "the TLS handshake timed out",
        mail_send::Error::UnexpectedReply(_) => return "the server refused STARTTLS",
        _ => None,
    };
    match rustls_error.map(why_rustls) {
        Some(NAME_MISMATCH) => "the certificate does not match the MX host name",
        Some(why) => why,
        None => "the TLS handshake failed",
    }
}

const NAME_MISMATCH: &str = "the certificate does not match the host name";

/// Why rustls refused a handshake, in words that name no host.
pub fn why_rustls(e: &rustls::Error) -> &'static str {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                NAME_MISMATCH
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the certificate has expired"
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the certificate is not valid yet"
            }
            CertificateError::UnknownIssuer => "the certificate is not from a trusted authority",
            _ => "the certificate could not be verified",
        },
        _ => "the TLS handshake failed",
    }
}
