//! The TLS configuration of ferry's HTTP clients, and whose certificate a server presented
//! when its check failed.
//!
//! Trusted roots: the platform's (`/etc/ssl/certs` and the like, `SSL_CERT_FILE`,
//! `SSL_CERT_DIR`, read by rustls-native-certs), the Mozilla roots compiled in
//! (webpki-roots), and a job's CA file.
//!
//! rustls says why it refused a certificate (`UnknownIssuer`, …) but not whose it was. The
//! certificate verifier is webpki's, wrapped: when it refuses a server's certificate, the
//! wrapper notes the subject of the end-entity certificate under the server's name and
//! returns webpki's error unchanged (same message, same TLS alert); [`presented_subject`]
//! hands the note to the error message ("the server presented a certificate for
//! 'CN=…'"), from the same handshake, without connecting again. A later successful check
//! for the same name removes the note, so a note is about the latest handshake with that
//! name. (Two servers with the same name on different ports failing at the same moment
//! could see each other's subject.)
//!
//! A job's TLS policy adds to that (BITS's `IBackgroundCopyJobHttpOptions`): revocation
//! lists its server's certificate is checked against (`BG_SSL_ENABLE_CRL_CHECK`), pinned
//! public keys (curl's `--pinnedpubkey sha256//…`: the SHA-256 of the server certificate's
//! SubjectPublicKeyInfo must be one of them), and a client certificate for servers that
//! ask for one (`SetClientCertificate*`). The fleet's TLS (`peers/tls.rs`) shares the
//! revocation list parsing and webpki's verifier with revocation ([`revocation_lists`],
//! [`webpki_verifier`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// At most this many notes are kept (a daemon failing against ever new names forgets all
/// of them at once when there are more).
const MAX_NOTES: usize = 256;

/// The subjects of refused certificates, by server name.
fn notes() -> &'static Mutex<HashMap<String, String>> {
    static NOTES: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    NOTES.get_or_init(Default::default)
}

/// The key of a server name: lowercase, without a final dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The subject (RFC 4514 form, e.g. `CN=localhost,O=Example`) of the certificate whose
/// check failed in the latest handshake with `host` (a DNS name or an IP address without
/// brackets), if that handshake failed on its certificate.
pub fn presented_subject(host: &str) -> Option<String> {
    let notes = notes().lock().unwrap_or_else(|p| p.into_inner());
    notes.get(&key(host)).cloned()
}

/// The crypto provider of every TLS configuration of ferryd (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate revocation lists of a PEM text (any number of `X509 CRL` blocks).
/// `Err` says why there is none to use: not PEM, or no list in it.
pub fn revocation_lists(pem: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let crls = CertificateRevocationListDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not PEM: {e}"))?;
    if crls.is_empty() {
        return Err("holds no revocation list (a PEM block `X509 CRL`)".into());
    }
    Ok(crls)
}

/// webpki's server certificate verifier over `roots`, checking the end-entity
/// certificate against `crls` when there are any (a certificate whose issuer has no list
/// among them is refused: its status is unknown).
pub fn webpki_verifier(
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
    let builder = WebPkiServerVerifier::builder_with_provider(roots, provider);
    let builder = if crls.is_empty() {
        builder
    } else {
        builder.with_crls(crls).only_check_end_entity_revocation()
    };
    builder
        .build()
        .map_err(|e| rustls::Error::General(format!("certificate verifier: {e}")))
}

/// The SHA-256 of a certificate's SubjectPublicKeyInfo (DER), curl's `--pinnedpubkey`
/// form: `sha256//BASE64`.
pub fn public_key_pin(cert: &CertificateDer<'_>) -> Option<String> {
    use base64::Engine as _;
    use x509_cert::der::{Decode, Encode};
    let c = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    let spki = c
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .ok()?;
    Some(format!(
        "sha256//{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&spki))
    ))
}

/// A server's public key that is none of the job's pins: the error the pinning
/// verifier returns (inside rustls's `CertificateError::Other`), which the engine tells
/// apart as `pinned_key_mismatch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinMismatch {
    /// The pin of the key the server presented (`sha256//…`).
    pub presented: String,
}

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the server's public key is {}, not one the job pins",
            self.presented
        )
    }
}

impl std::error::Error for PinMismatch {}

/// The platform's roots and Mozilla's, read once.
fn base_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::debug!("platform certificates: {e}");
        }
        // Platform stores hold some certificates webpki cannot parse; they are skipped.
        let (added, skipped) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, skipped, "platform root certificates");
        roots
    })
}

/// How a job checks its servers' certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Check {
    /// Against the trusted roots (and the job's CA file).
    #[default]
    Verify,
    /// Not at all (curl's `-k`, a job's `insecure_tls`): the handshake's signatures are
    /// still checked, so the connection is encrypted to whoever holds the key.
    Insecure,
}

/// What a job's TLS configuration is made of (its files already read and parsed).
#[derive(Debug, Default)]
pub struct Settings {
    /// The job's CA file's certificates, trusted beside the platform's and Mozilla's.
    pub extra_roots: Vec<CertificateDer<'static>>,
    pub check: Check,
    /// Revocation lists the server's certificate is checked against (none: no check).
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// `sha256//BASE64` pins of the server's public key (none: any key).
    pub pins: Vec<String>,
    /// A client certificate chain and its key, for servers that ask for one.
    pub client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

/// A rustls configuration for an HTTP client: the platform's and Mozilla's roots plus
/// the job's CA file (`extra_roots`), checked by a [`NamingVerifier`] (with the job's
/// revocation lists), its public key pinned when the job pins any, the client
/// certificate sent when the server asks, HTTP/2 and HTTP/1.1 offered by ALPN (what
/// reqwest configures when it builds its own). A certificate of `extra_roots` that is
/// no CA (a server's own, self-signed certificate given as the CA file, as curl's
/// `--cacert` takes it) is trusted as that server's: pinned, its name still checked.
pub fn client_config(settings: Settings) -> Result<rustls::ClientConfig, rustls::Error> {
    let Settings {
        extra_roots,
        check,
        crls,
        pins,
        client_auth,
    } = settings;
    let mut roots = base_roots().clone();
    for cert in &extra_roots {
        roots.add(cert.clone())?;
    }
    let provider = provider();
    let mut verifier: Arc<dyn ServerCertVerifier> = match check {
        Check::Verify => Arc::new(
            NamingVerifier::with_crls(Arc::new(roots), provider.clone(), crls)?
                .pinning(extra_roots),
        ),
        Check::Insecure => Arc::new(AcceptAny {
            provider: provider.clone(),
        }),
    };
    if !pins.is_empty() {
        verifier = Arc::new(PinningVerifier {
            inner: verifier,
            pins,
        });
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        // "dangerous" because any verifier could be installed: this one is webpki's (or,
        // for a job that asked not to check, none), and a pin's check after it.
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client_auth {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Checks the server's certificate as `inner` does, then its public key against the
/// job's pins (curl's `--pinnedpubkey`: checked even when the certificate is not).
#[derive(Debug)]
struct PinningVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    pins: Vec<String>,
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let presented = public_key_pin(end_entity).unwrap_or_else(|| "unreadable".into());
        if self.pins.contains(&presented) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch {
                    presented,
                }))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// webpki's certificate verifier, noting the subject of each certificate it refuses.
#[derive(Debug)]
pub struct NamingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    /// Certificates trusted as they are (a job's CA file): a server presenting one of
    /// them, valid for the name asked, is accepted whatever webpki says of its chain.
    pinned: Vec<CertificateDer<'static>>,
}

impl NamingVerifier {
    pub fn new(
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
    ) -> Result<NamingVerifier, rustls::Error> {
        NamingVerifier::with_crls(roots, provider, Vec::new())
    }

    /// Also checks the end-entity certificate against `crls` (when there are any).
    pub fn with_crls(
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<NamingVerifier, rustls::Error> {
        Ok(NamingVerifier {
            inner: webpki_verifier(roots, provider, crls)?,
            pinned: Vec::new(),
        })
    }

    /// Trusts `certs` as they are, for the names they are valid for.
    pub fn pinning(mut self, certs: Vec<CertificateDer<'static>>) -> NamingVerifier {
        self.pinned = certs;
        self
    }

    /// True when `end_entity` is a pinned certificate valid now for `server_name`.
    fn pinned_for(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> bool {
        if !self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return false;
        }
        let Ok(cert) = webpki::EndEntityCert::try_from(end_entity) else {
            return false;
        };
        let in_time = x509_validity(end_entity).is_none_or(|(from, to)| {
            let t = now.as_secs();
            from <= t && t <= to
        });
        in_time && cert.verify_is_valid_for_subject_name(server_name).is_ok()
    }
}

/// The validity period of a DER certificate (seconds since the epoch).
fn x509_validity(cert: &CertificateDer<'_>) -> Option<(u64, u64)> {
    use x509_cert::der::Decode;
    let c = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    let v = c.tbs_certificate().validity();
    Some((
        v.not_before.to_unix_duration().as_secs(),
        v.not_after.to_unix_duration().as_secs(),
    ))
}

/// A verifier that accepts any certificate (a job's `insecure_tls`) and still checks the
/// handshake's signatures with the certificate's key.
#[derive(Debug)]
struct AcceptAny {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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

impl ServerCertVerifier for NamingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .or_else(|e| {
                if self.pinned_for(end_entity, server_name, now) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(e)
                }
            });
        let subject = match &result {
            Err(rustls::Error::InvalidCertificate(_)) => subject_of(end_entity),
            _ => None,
        };
        let name = key(&server_name.to_str());
        let mut notes = notes().lock().unwrap_or_else(|p| p.into_inner());
        match subject {
            Some(subject) => {
                if notes.len() >= MAX_NOTES && !notes.contains_key(&name) {
                    notes.clear();
                }
                notes.insert(name, subject);
            }
            None => {
                notes.remove(&name);
            }
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// The subject of a DER certificate in RFC 4514 form (`CN=localhost,O=Example`): webpki,
/// which parsed the certificate for the check, finds the field, x509-cert renders it.
fn subject_of(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_cert::der::asn1::AnyRef;
    use x509_cert::der::Tag;
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    let name = AnyRef::new(Tag::Sequence, cert.subject())
        .ok()?
        .decode_as::<x509_cert::name::Name>()
        .ok()?;
    let subject = name.to_string();
    (!subject.is_empty()).then_some(subject)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    /// A CA, and a server certificate it signed for `name` with subject `CN=<name>,O=ferry test`.
    fn ca_and_server(name: &str) -> (CertificateDer<'static>, CertificateDer<'static>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "ferry test CA");
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut server = CertificateParams::new(vec![name.to_string()]).unwrap();
        server.distinguished_name = rcgen::DistinguishedName::new();
        // In the usual order, most significant first: RFC 4514 writes it reversed.
        server
            .distinguished_name
            .push(DnType::OrganizationName, "ferry test");
        server.distinguished_name.push(DnType::CommonName, name);
        let server = server.signed_by(&key, &ca, &ca_key).unwrap();
        (ca.der().clone(), server.der().clone())
    }

    fn verify(
        verifier: &NamingVerifier,
        cert: &CertificateDer<'_>,
        name: &str,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = ServerName::try_from(name.to_string()).unwrap();
        verifier.verify_server_cert(cert, &[], &name, &[], UnixTime::now())
    }

    #[test]
    fn a_refused_certificate_leaves_its_subject_until_a_check_succeeds() {
        let name = "refused.ferry.test";
        let (ca, server) = ca_and_server(name);
        let untrusting = NamingVerifier::new(Arc::new(base_roots().clone()), provider()).unwrap();
        let err = verify(&untrusting, &server, name).unwrap_err();
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            "webpki's error is passed on as it is"
        );
        let expected = format!("CN={name},O=ferry test");
        assert_eq!(presented_subject(name).as_deref(), Some(expected.as_str()));
        assert_eq!(
            presented_subject("REFUSED.ferry.test.").as_deref(),
            Some(expected.as_str()),
            "names are compared as DNS names"
        );
        assert_eq!(presented_subject("other.ferry.test"), None);

        let mut roots = base_roots().clone();
        roots.add(ca).unwrap();
        let trusting = NamingVerifier::new(Arc::new(roots), provider()).unwrap();
        verify(&trusting, &server, name).expect("trusted through the CA");
        assert_eq!(
            presented_subject(name),
            None,
            "the success replaced the note"
        );
    }

    #[test]
    fn a_certificate_for_another_name_is_noted_too() {
        let (ca, server) = ca_and_server("right.ferry.test");
        let mut roots = base_roots().clone();
        roots.add(ca).unwrap();
        let verifier = NamingVerifier::new(Arc::new(roots), provider()).unwrap();
        verify(&verifier, &server, "right.ferry.test").expect("valid for its own name");
        let err = verify(&verifier, &server, "wrong.ferry.test").unwrap_err();
        assert!(
            err.to_string().contains("not valid for name"),
            "webpki's error: {err}"
        );
        assert_eq!(
            presented_subject("wrong.ferry.test").as_deref(),
            Some("CN=right.ferry.test,O=ferry test")
        );
        assert_eq!(presented_subject("right.ferry.test"), None);
    }

    #[test]
    fn client_configs_offer_h2_and_refuse_a_bad_extra_root() {
        let (ca, _) = ca_and_server("config.ferry.test");
        let config = client_config(Settings {
            extra_roots: vec![ca],
            ..Settings::default()
        })
        .unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let garbage = CertificateDer::from(b"not a certificate".to_vec());
        assert!(client_config(Settings {
            extra_roots: vec![garbage],
            ..Settings::default()
        })
        .is_err());
    }

    #[test]
    fn a_self_signed_server_certificate_given_as_the_ca_file_is_pinned_for_its_names() {
        // As `openssl req -x509` makes one: self-signed, with CA:TRUE.
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["pinned.ferry.test".to_string()]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let own = params.self_signed(&key).unwrap().der().clone();
        let plain = NamingVerifier::new(Arc::new(base_roots().clone()), provider()).unwrap();
        assert!(
            verify(&plain, &own, "pinned.ferry.test").is_err(),
            "unknown issuer"
        );
        let mut roots = base_roots().clone();
        roots.add(own.clone()).unwrap();
        let webpki_only = NamingVerifier::new(Arc::new(roots.clone()), provider()).unwrap();
        assert!(
            verify(&webpki_only, &own, "pinned.ferry.test").is_err(),
            "webpki alone refuses a CA used as its own end entity"
        );
        let pinned = NamingVerifier::new(Arc::new(roots), provider())
            .unwrap()
            .pinning(vec![own.clone()]);
        verify(&pinned, &own, "pinned.ferry.test").expect("pinned, right name");
        assert!(
            verify(&pinned, &own, "other.ferry.test").is_err(),
            "pinned for its own names only"
        );
        let (_, someone_else) = ca_and_server("pinned.ferry.test");
        assert!(verify(&pinned, &someone_else, "pinned.ferry.test").is_err());
    }

    #[test]
    fn insecure_accepts_any_certificate() {
        let (_, server) = ca_and_server("anything.ferry.test");
        let any = AcceptAny {
            provider: provider(),
        };
        let name = ServerName::try_from("elsewhere.example").unwrap();
        any.verify_server_cert(&server, &[], &name, &[], UnixTime::now())
            .expect("not checked");
        assert!(!any.supported_verify_schemes().is_empty());
    }

    /// A CA (with its key), a server certificate for `name` with serial 7, and the CA's
    /// CRL listing `revoked` serials (PEM).
    fn ca_server_crl(
        name: &str,
        revoked: &[u64],
    ) -> (
        CertificateDer<'static>,
        CertificateDer<'static>,
        String,
        KeyPair,
    ) {
        use rcgen::{
            CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "ferry CRL CA");
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut server = CertificateParams::new(vec![name.to_string()]).unwrap();
        server.serial_number = Some(SerialNumber::from(7u64));
        let server = server.signed_by(&key, &ca, &ca_key).unwrap();
        let crl = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2090, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: rcgen::date_time_ymd(2024, 6, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca, &ca_key)
        .unwrap()
        .pem()
        .unwrap();
        (ca.der().clone(), server.der().clone(), crl, key)
    }

    #[test]
    fn crl_parity_a_listed_certificate_is_revoked_and_others_pass() {
        let name = "crl.ferry.test";
        for (revoked, expected) in [
            (&[7u64][..], Err(rustls::CertificateError::Revoked)),
            (&[8u64][..], Ok(())),
        ] {
            let (ca, server, crl, _) = ca_server_crl(name, revoked);
            let mut roots = RootCertStore::empty();
            roots.add(ca).unwrap();
            let crls = revocation_lists(crl.as_bytes()).unwrap();
            let v = NamingVerifier::with_crls(Arc::new(roots), provider(), crls).unwrap();
            let got = verify(&v, &server, name).map(|_| ()).map_err(|e| match e {
                rustls::Error::InvalidCertificate(c) => c,
                other => panic!("{other}"),
            });
            assert_eq!(got, expected, "revoked serials {revoked:?}");
        }
        assert!(revocation_lists(b"no list").is_err());
    }

    #[test]
    fn pinned_key_parity_the_pin_is_checked_after_the_certificate() {
        let name = "pin.ferry.test";
        let (ca, server, _, key) = ca_server_crl(name, &[]);
        let pin = public_key_pin(&server).unwrap();
        {
            use base64::Engine as _;
            let expected = base64::engine::general_purpose::STANDARD
                .encode(Sha256::digest(key.public_key_der()));
            assert_eq!(pin, format!("sha256//{expected}"), "the SPKI's hash");
        }
        let mut roots = RootCertStore::empty();
        roots.add(ca).unwrap();
        let inner: Arc<dyn ServerCertVerifier> =
            Arc::new(NamingVerifier::new(Arc::new(roots), provider()).unwrap());
        let right = PinningVerifier {
            inner: inner.clone(),
            pins: vec!["sha256//other".into(), pin.clone()],
        };
        let name_ = ServerName::try_from(name).unwrap();
        right
            .verify_server_cert(&server, &[], &name_, &[], UnixTime::now())
            .expect("its key is pinned");
        let wrong = PinningVerifier {
            inner,
            pins: vec!["sha256//other".into()],
        };
        match wrong.verify_server_cert(&server, &[], &name_, &[], UnixTime::now()) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))) => {
                let m = o.0.downcast_ref::<PinMismatch>().expect("a PinMismatch");
                assert_eq!(m.presented, pin);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn subjects_of_odd_input() {
        assert_eq!(
            subject_of(&CertificateDer::from(&b"not a certificate"[..])),
            None
        );
        assert_eq!(subject_of(&CertificateDer::from(&[][..])), None);
    }
}
