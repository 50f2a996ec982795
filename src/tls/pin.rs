//! The client's side of trust: a server is accepted when its key has the fingerprint the
//! client pinned (or was given), whatever names or authorities its certificate claims. A
//! self-signed classroom server is then as safe as one with a bought certificate, and a
//! classmate's relay with any other key is refused.

use super::fingerprint::Fingerprint;
use super::identity::{fingerprint_of, provider};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::sync::{Arc, Mutex};

/// Accepts the server whose key matches `expected` (any key if `None`), and remembers the
/// fingerprint it saw, so a caller can pin a first connection or explain a refusal.
#[derive(Debug)]
pub struct PinVerifier {
    expected: Option<String>,
    seen: Mutex<Option<Fingerprint>>,
    provider: Arc<CryptoProvider>,
}

impl PinVerifier {
    /// A verifier for the fingerprint `expected` (short or full form; see
    /// [`Fingerprint::matches`]); `None` accepts any key (trust on first use).
    pub fn new(expected: Option<&str>) -> Arc<PinVerifier> {
        Arc::new(PinVerifier {
            expected: expected.map(str::to_string),
            seen: Mutex::new(None),
            provider: provider(),
        })
    }

    /// The fingerprint of the key the server presented, once a handshake got that far.
    pub fn seen(&self) -> Option<Fingerprint> {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A rustls client configuration that trusts only through this verifier.
    pub fn client_config(self: &Arc<Self>) -> Arc<ClientConfig> {
        let config = ClientConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::clone(self) as Arc<dyn ServerCertVerifier>)
            .with_no_client_auth();
        Arc::new(config)
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = fingerprint_of(end_entity).ok_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ))?;
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(seen);
        match &self.expected {
            Some(expected) if !seen.matches(expected) => Err(rustls::Error::General(format!(
                "the server's fingerprint is {}, not the expected {expected}",
                seen.short()
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
        verify_tls13_signature(
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
