//! TLS toward a victor server. A server is trusted either by the fingerprint of its
//! certificate, as with a self-signed `victor serve --tls` (it holds exactly the certificate the
//! user checked, whoever signed it), or, for a public server, as the system trusts it. The
//! system's root certificates are read only for the latter, at its first handshake, once per
//! process: a call to a local or pinned server never pays for them.

use std::error::Error as StdError;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use rustls_platform_verifier::Verifier as SystemVerifier;

use super::ClientError;
use crate::proto::Fingerprint;

/// The one TLS implementation of the process, the one reqwest uses too.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Whom a connection trusts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Trust {
    /// Exactly the certificate with this fingerprint; `None` trusts nothing: the handshake stops
    /// at the certificate, which is recorded in the error (to show the user before they trust
    /// it). Names and validity dates are not checked (a self-signed certificate names whatever
    /// its server chose, and the user vouched for this very certificate).
    Pinned(Option<Fingerprint>),
    /// What the system trusts: its root certificates and the server's name.
    System,
}

impl Trust {
    /// The pinned certificate when there is one, else what the system trusts.
    pub(super) fn of(pin: Option<Fingerprint>) -> Trust {
        pin.map_or(Trust::System, |pin| Trust::Pinned(Some(pin)))
    }
}

/// Either way, the handshake signatures are checked: the server must hold the certificate's
/// private key, not merely a copy of the certificate.
#[derive(Debug)]
struct Verifier {
    trust: Trust,
    provider: Arc<CryptoProvider>,
}

/// The system's verifier, made at the first handshake that needs it and kept for the process.
static SYSTEM: OnceLock<Result<SystemVerifier, rustls::Error>> = OnceLock::new();

impl Verifier {
    fn system(&self) -> Result<&SystemVerifier, rustls::Error> {
        match SYSTEM.get_or_init(|| SystemVerifier::new(self.provider.clone())) {
            Ok(verifier) => Ok(verifier),
            Err(e) => Err(e.clone()),
        }
    }
}

/// The certificate a server presented when it was not the expected one; travels inside the
/// handshake's error.
#[derive(Debug, thiserror::Error)]
#[error("the server presented the certificate {presented}, which is not the trusted one")]
struct Presented {
    presented: Fingerprint,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let expected = match self.trust {
            Trust::System => {
                return self.system()?.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                );
            }
            Trust::Pinned(expected) => expected,
        };
        let presented = Fingerprint::of_certificate(end_entity);
        if expected == Some(presented) {
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(Presented { presented })),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS client configuration that trusts `trust`, offering `alpn` (HTTP/2 and 1.1 for
/// requests, 1.1 alone for the WebSocket). Cheap: nothing is read until a handshake needs it.
pub(super) fn config(trust: Trust, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, ClientError> {
    let provider = provider();
    let verifier = Arc::new(Verifier {
        trust,
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Transport(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(config)
}

/// The error for a connection that failed in TLS, or `None` when it failed otherwise: a
/// certificate other than the pinned one, or another TLS failure (with a hint when the
/// certificate is one nobody vouches for, as a self-signed victor's is).
pub(super) fn tls_error(
    url: &str,
    pinned: Option<Fingerprint>,
    error: &(dyn StdError + 'static),
) -> Option<ClientError> {
    let tls = find_tls_error(error)?;
    if let (Some(expected), Some(presented)) = (pinned, presented_in(tls)) {
        return Some(ClientError::FingerprintMismatch {
            url: url.to_string(),
            expected,
            presented,
        });
    }
    let hint = match tls {
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) if pinned.is_none() => {
            " (if it is a victor server with a self-signed certificate, trust it by its \
             fingerprint: `victor remote add NAME URL --fingerprint F`)"
        }
        rustls::Error::InvalidMessage(_) => {
            " (does it serve plain HTTP? then its URL starts with http://)"
        }
        _ => "",
    };
    Some(ClientError::Tls {
        url: url.to_string(),
        reason: format!("{tls}{hint}"),
    })
}

fn presented_in(error: &rustls::Error) -> Option<Fingerprint> {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => other
            .0
            .downcast_ref::<Presented>()
            .map(|presented| presented.presented),
        _ => None,
    }
}

/// The rustls error somewhere in an error's chain of sources.
fn find_tls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // An io::Error's source() skips the error it wraps: look at that one too.
        if let Some(inner) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && let Some(tls) = find_tls_error(inner)
        {
            return Some(tls);
        }
        current = error.source();
    }
    None
}

/// Connects to an `https` server only to see its certificate, and returns its fingerprint.
/// Nothing is sent: the handshake stops at the certificate. This is the first step of trust on
/// first use, before the user says whether to trust what they see.
pub async fn presented_fingerprint(server: &str) -> Result<Fingerprint, ClientError> {
    let bad_url = || ClientError::BadUrl(server.into());
    let url = reqwest::Url::parse(server).map_err(|_| bad_url())?;
    let (Some(host), Some(port), "https") =
        (url.host_str(), url.port_or_known_default(), url.scheme())
    else {
        return Err(bad_url());
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let name = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ServerName::from(ip),
        Err(_) => ServerName::try_from(host.clone()).map_err(|_| bad_url())?,
    };
    let cannot_reach = || ClientError::Unreachable {
        url: server.to_string(),
    };
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .map_err(|_| cannot_reach())?
    .map_err(|_| cannot_reach())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config(Trust::Pinned(None), &[])?));
    let error = match connector.connect(name, tcp).await {
        Ok(_) => {
            return Err(ClientError::Protocol(
                "a TLS handshake that trusts no certificate succeeded".into(),
            ));
        }
        Err(error) => error,
    };
    find_tls_error(&error)
        .and_then(presented_in)
        .ok_or_else(|| ClientError::Tls {
            url: server.to_string(),
            reason: error.to_string(),
        })
}
