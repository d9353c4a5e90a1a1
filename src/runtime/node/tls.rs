//! The node link's TLS: each node makes its own key and self-signed certificate once, and the
//! API replicas pin that certificate by its SHA-256 fingerprint (recorded when the node joined),
//! so neither side needs a CA and a stolen join token cannot stand in for a node later.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The name in every node certificate; the API dials nodes by address and checks the pin.
pub const SERVER_NAME: &str = "ocaas-node";

/// A node's key and certificate (DER).
pub struct Identity {
    pub cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Identity {
    /// A fresh key and self-signed certificate.
    pub fn generate() -> anyhow::Result<Self> {
        let made = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])?;
        Ok(Identity { cert: made.cert.der().clone(), key: PrivatePkcs8KeyDer::from(made.key_pair.serialize_der()) })
    }

    /// The identity kept in `dir` (`node.crt.der`, `node.key.der`), made on first use.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        let (cert_path, key_path) = (dir.join("node.crt.der"), dir.join("node.key.der"));
        if cert_path.exists() && key_path.exists() {
            let cert = CertificateDer::from(std::fs::read(&cert_path)?);
            let key = PrivatePkcs8KeyDer::from(std::fs::read(&key_path)?);
            return Ok(Identity { cert, key });
        }
        let identity = Identity::generate()?;
        std::fs::create_dir_all(dir)?;
        crate::secrets::write_private(&key_path, identity.key.secret_pkcs8_der())?;
        std::fs::write(&cert_path, identity.cert.as_ref())?;
        Ok(identity)
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }

    /// The server side: this identity, HTTP/2 only.
    pub fn server_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let key = PrivateKeyDer::Pkcs8(self.key.clone_key());
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], key)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Lowercase hex SHA-256 of a certificate's DER.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    crate::secrets::hex(&Sha256::digest(cert.as_ref()))
}

/// *ring* rather than aws-lc-rs: no cmake and a much shorter build on small machines. Its
/// key exchange is classical (no post-quantum hybrid), which is why rustls marks it deprecated.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client side: trusts exactly the certificate with `pin` as its fingerprint.
pub fn client_config(pin: &str) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = provider();
    let verifier = Arc::new(Pinned { pin: pin.to_ascii_lowercase(), provider: provider.clone() });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct Pinned {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if bool::from(fingerprint(end_entity).as_bytes().ct_eq(self.pin.as_bytes())) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("the node's certificate is not the one it joined with".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
