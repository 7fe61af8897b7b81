//! Fleet trust: mutual TLS 1.3 between fleet members. Every node holds a certificate
//! signed by the fleet CA and the CA's certificate; the peer port accepts only clients
//! whose certificate chains to that CA, and the client side accepts only servers whose
//! certificate does. Names are not checked: a peer is addressed by whatever address
//! discovery found, and membership of the fleet is what is trusted (the content itself is
//! checked by its SHA-256).
//!
//! The fleet id announced over mDNS is the first 32 hex digits of the SHA-256 of the CA
//! certificate (DER), so fleets sharing a link tell each other apart.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;

use crate::engine::tls::{provider, revocation_lists, webpki_verifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::config::PeersConfig;

/// What a node needs to talk to its fleet.
pub struct FleetTls {
    /// The fleet's id: a hash of its CA certificate.
    pub fleet_id: String,
    /// This node's name: its certificate's common name.
    pub node_name: String,
    /// When this node's certificate expires, ms since the Unix epoch (0: unreadable).
    pub node_cert_expires_ms: i64,
    /// The peer port's configuration (client certificates required).
    pub server: Arc<rustls::ServerConfig>,
    /// The configuration of requests to peers (with this node's certificate).
    pub client: rustls::ClientConfig,
}

fn read(what: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "reading the fleet's {what} {} (make one with `ferry peers ca new DIR` and \
             `ferry peers cert issue --ca DIR NAME`, then set it in the [peers] section of \
             ferryd.toml)",
            path.display()
        )
    })
}

fn certificates(
    what: &str,
    path: &Path,
    pem: &[u8],
) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("the {what} {} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!(
            "the {what} {} holds no certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// The first 32 hex digits of the SHA-256 of a CA certificate.
pub fn fleet_id(ca: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(ca.as_ref()))[..32].to_string()
}

/// The common name of a certificate, else its whole subject.
fn common_name(cert: &CertificateDer<'_>) -> String {
    use x509_cert::der::Decode;
    let Ok(c) = x509_cert::Certificate::from_der(cert.as_ref()) else {
        return "unknown".into();
    };
    let subject = c.tbs_certificate().subject().to_string();
    subject
        .split(',')
        .find_map(|p| p.trim().strip_prefix("CN="))
        .map(str::to_string)
        .unwrap_or(subject)
}

/// When a certificate expires (its notAfter), ms since the Unix epoch; 0 if unreadable.
pub fn expires_ms(cert: &CertificateDer<'_>) -> i64 {
    use x509_cert::der::Decode;
    x509_cert::Certificate::from_der(cert.as_ref())
        .map(|c| {
            c.tbs_certificate()
                .validity()
                .not_after
                .to_unix_duration()
                .as_millis() as i64
        })
        .unwrap_or(0)
}

/// The fleet's trust material as its files hold it (PEM).
#[derive(Debug, Clone)]
pub struct Material {
    pub ca_cert: Vec<u8>,
    pub node_cert: Vec<u8>,
    pub node_key: Vec<u8>,
    /// The fleet's revocation list (PEM); empty when there is none.
    pub crl: Vec<u8>,
}

/// Reads the files of the fleet's trust material named in the configuration (the
/// system-wide daemon's broker does it as root, for the cache process).
pub fn read_material(config: &PeersConfig) -> anyhow::Result<Material> {
    Ok(Material {
        ca_cert: read("CA certificate", &config.ca_cert)?,
        node_cert: read("node certificate", &config.node_cert)?,
        node_key: read("node key", &config.node_key)?,
        crl: match std::fs::read(&config.crl) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(anyhow!(
                    "reading the fleet's revocation list {}: {e}",
                    config.crl.display()
                ))
            }
        },
    })
}

/// Loads the fleet's trust material named in the configuration.
pub fn load(config: &PeersConfig) -> anyhow::Result<FleetTls> {
    from_material(config, &read_material(config)?)
}

/// The fleet's TLS configuration from its material (`config` names the files it came
/// from, for the messages).
pub fn from_material(config: &PeersConfig, m: &Material) -> anyhow::Result<FleetTls> {
    let ca = certificates("CA certificate", &config.ca_cert, &m.ca_cert)?;
    let chain = certificates("node certificate", &config.node_cert, &m.node_cert)?;
    let key = PrivateKeyDer::from_pem_slice(&m.node_key).map_err(|e| {
        anyhow!(
            "the node key {} is not a PEM private key: {e}",
            config.node_key.display()
        )
    })?;
    let mut roots = RootCertStore::empty();
    for c in &ca {
        roots
            .add(c.clone())
            .map_err(|e| anyhow!("the CA certificate {}: {e}", config.ca_cert.display()))?;
    }
    let roots = Arc::new(roots);
    let provider = provider();
    // Our own certificate must come from the same CA, or nobody would accept us.
    FleetVerifier {
        roots: roots.clone(),
        provider: provider.clone(),
        revocation: None,
    }
    .check(&chain[0], &chain[1..])
    .map_err(|e| {
        anyhow!(
            "the node certificate {} was not issued by the fleet CA {}: {e}",
            config.node_cert.display(),
            config.ca_cert.display()
        )
    })?;
    let crls = revocation_list(config, &m.crl)?;
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .with_crls(crls.clone())
            .only_check_end_entity_revocation()
            .build()
            .map_err(|e| anyhow!("the fleet CA cannot verify clients: {e}"))?;
    let revocation = if crls.is_empty() {
        None
    } else {
        Some(
            webpki_verifier(roots.clone(), provider.clone(), crls)
                .map_err(|e| anyhow!("the fleet CA cannot verify peers: {e}"))?,
        )
    };
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| anyhow!("the node certificate and key do not go together: {e}"))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        // "dangerous" because any verifier could be installed: this one is webpki's
        // chain check against the fleet CA, without the name check (see the module doc).
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(FleetVerifier {
            roots,
            provider,
            revocation,
        }))
        .with_client_auth_cert(chain.clone(), key)
        .map_err(|e| anyhow!("the node certificate and key do not go together: {e}"))?;
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(FleetTls {
        fleet_id: fleet_id(&ca[0]),
        node_name: common_name(&chain[0]),
        node_cert_expires_ms: expires_ms(&chain[0]),
        server: Arc::new(server),
        client,
    })
}

/// The fleet's revocation list, if it has one (PEM, any number of CRLs).
fn revocation_list(
    config: &PeersConfig,
    pem: &[u8],
) -> anyhow::Result<Vec<rustls::pki_types::CertificateRevocationListDer<'static>>> {
    if pem.is_empty() {
        return Ok(Vec::new());
    }
    revocation_lists(pem).map_err(|why| {
        anyhow!(
            "the fleet's revocation list {} {why} (make it with `ferry peers cert revoke`, \
             or remove the file)",
            config.crl.display()
        )
    })
}

/// Accepts a server certificate that chains to the fleet CA, whatever its name, and that
/// the fleet's revocation list does not list.
#[derive(Debug)]
struct FleetVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    /// webpki's verifier with the revocation list, asked for the certificate's own name
    /// (its common name, which `ferry peers cert issue` also makes its DNS name).
    revocation: Option<Arc<rustls::client::WebPkiServerVerifier>>,
}

impl FleetVerifier {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            UnixTime::now(),
            self.provider.signature_verification_algorithms.all,
        )?;
        if let Some(v) = &self.revocation {
            let name = ServerName::try_from(common_name(end_entity)).map_err(|_| {
                rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
            })?;
            v.verify_server_cert(end_entity, intermediates, &name, &[], UnixTime::now())?;
        }
        Ok(())
    }
}

impl ServerCertVerifier for FleetVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // TLS 1.3 only: never reached.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
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
