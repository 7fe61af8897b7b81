//! The HTTP client and request options of a job: proxy (and its credentials), extra CA,
//! TLS policy (revocation lists, pinned keys, client certificate), redirect policy,
//! headers, credentials.

use std::time::Duration;

use reqwest::{Client, RequestBuilder};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::error::TransferError;
use super::tls;
use crate::model::{Credentials, ErrorContext, ErrorKind, HttpSecurity, JobOptions, ProxySetting};

use super::redirect::{self, MAX_REDIRECTS};

/// A client builder with ferry's settings and TLS configuration (see [`tls`]).
fn builder(tls: rustls::ClientConfig) -> reqwest::ClientBuilder {
    Client::builder()
        .use_preconfigured_tls(tls)
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .redirect(redirect::policy(crate::model::RedirectPolicy::default()))
        .connect_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .http2_adaptive_window(true)
        .pool_idle_timeout(Duration::from_secs(90))
}

/// The client shared by jobs with default options (one connection pool).
pub fn shared() -> Client {
    let tls = tls::client_config(tls::Settings::default()).expect("the TLS configuration is valid");
    builder(tls)
        .build()
        .expect("the HTTP client configuration is valid")
}

/// The files a job's options name, each as its path and its bytes, read as the job's
/// owner (a user names them; in system mode the daemon must not read them as root).
#[derive(Debug, Default)]
pub struct OwnerFiles {
    pub ca_file: Option<(String, Vec<u8>)>,
    pub crl_file: Option<(String, Vec<u8>)>,
    pub client_certificate: Option<(String, Vec<u8>)>,
    pub client_key: Option<(String, Vec<u8>)>,
}

/// The client for a job: the shared one, or a dedicated one when the job has its own
/// proxy, CA file or TLS and redirect policy ([`HttpSecurity`]), checks no certificate
/// (`insecure_tls`) or yields to other traffic (`own_pool`: the window clamps of its
/// connections must never hold back another job that would reuse them from a shared
/// pool). `files`: the files its options name, read as its owner.
pub fn for_job(
    options: &JobOptions,
    files: &OwnerFiles,
    shared: &Client,
    own_pool: bool,
) -> Result<Client, TransferError> {
    if options.proxy == ProxySetting::System
        && options.ca_file.is_none()
        && !options.insecure_tls
        && !options.security.needs_own_client()
        && !own_pool
    {
        return Ok(shared.clone());
    }
    let settings = tls_settings(options, files)?;
    let tls = tls::client_config(settings).map_err(|e| {
        let path = files
            .ca_file
            .as_ref()
            .map(|(path, _)| path.as_str())
            .unwrap_or_default();
        match &files.client_certificate {
            Some((cert, _)) => TransferError::new(
                ErrorContext::LocalFile,
                ErrorKind::ClientCertificate,
                format!(
                    "the client certificate {cert} and its key cannot be used together, or \
                     the CA file {path} holds a certificate ferry cannot use: {e}"
                ),
            ),
            None => TransferError::new(
                ErrorContext::LocalFile,
                ErrorKind::CaFile,
                format!("the CA file {path} holds a certificate ferry cannot use: {e}"),
            ),
        }
    })?;
    let mut b = builder(tls).redirect(redirect::policy(options.security.redirect_policy));
    match &options.proxy {
        ProxySetting::System => {
            if let Some(p) = system_proxy_with_credentials(&options.security) {
                b = b.proxy(p);
            }
        }
        ProxySetting::None => b = b.no_proxy(),
        ProxySetting::Url(u) => {
            let mut p = reqwest::Proxy::all(u).map_err(|e| {
                TransferError::new(
                    ErrorContext::Transport,
                    ErrorKind::BadProxy,
                    format!("proxy {}: {e}", crate::model::mask_url(u)),
                )
            })?;
            if let Some(c) = &options.security.proxy_credentials {
                p = p.basic_auth(&c.user, &c.password);
            }
            b = b.proxy(p);
        }
    }
    b.build().map_err(|e| {
        TransferError::new(
            ErrorContext::Daemon,
            ErrorKind::HttpClient,
            format!("building the HTTP client: {e}"),
        )
    })
}

/// The TLS settings of a job from its options and its files.
fn tls_settings(options: &JobOptions, files: &OwnerFiles) -> Result<tls::Settings, TransferError> {
    let extra_roots = match &files.ca_file {
        Some((path, pem)) => ca_file_certificates(path, pem)?,
        None => Vec::new(),
    };
    let crls = match &files.crl_file {
        Some((path, pem)) => tls::revocation_lists(pem).map_err(|why| {
            TransferError::new(
                ErrorContext::LocalFile,
                ErrorKind::CrlFile,
                format!("the CRL file {path} {why}"),
            )
        })?,
        None => Vec::new(),
    };
    let client_auth = match &files.client_certificate {
        Some((path, pem)) => Some(client_identity(
            (path, pem),
            files
                .client_key
                .as_ref()
                .map(|(p, k)| (p.as_str(), k.as_slice())),
        )?),
        None => None,
    };
    Ok(tls::Settings {
        extra_roots,
        check: if options.insecure_tls {
            tls::Check::Insecure
        } else {
            tls::Check::Verify
        },
        crls,
        pins: options.security.pinned_public_keys.clone(),
        client_auth,
    })
}

/// The certificate chain of a client certificate file and its private key (from the key
/// file, else from the certificate file itself).
fn client_identity(
    (path, pem): (&str, &[u8]),
    key: Option<(&str, &[u8])>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TransferError> {
    let bad = |message: String| {
        TransferError::new(
            ErrorContext::LocalFile,
            ErrorKind::ClientCertificate,
            message,
        )
    };
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("the client certificate {path} is not PEM: {e}")))?;
    if chain.is_empty() {
        return Err(bad(format!(
            "the client certificate {path} holds no PEM certificate"
        )));
    }
    let (key_path, key_pem) = key.unwrap_or((path, pem));
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        bad(format!(
            "the client key {key_path} holds no PEM private key ({e}); give the key file \
             (client_key) or put the key in the certificate's file"
        ))
    })?;
    Ok((chain, key))
}

/// The system's proxy (`http_proxy`, `https_proxy`, `all_proxy` and `no_proxy` of the
/// daemon's environment, as reqwest reads them) with the job's proxy credentials, when
/// it has any; `None`: reqwest's own reading of the environment applies.
fn system_proxy_with_credentials(security: &HttpSecurity) -> Option<reqwest::Proxy> {
    let c = security.proxy_credentials.as_ref()?;
    let env = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
    };
    let http = env(&["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]);
    let https = env(&["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]);
    if http.is_none() && https.is_none() {
        return None;
    }
    let proxy = reqwest::Proxy::custom(move |url| match url.scheme() {
        "https" => https.clone(),
        _ => http.clone(),
    })
    .basic_auth(&c.user, &c.password)
    .no_proxy(reqwest::NoProxy::from_env());
    Some(proxy)
}

/// The certificates of a job's CA file (`pem`, read from `path`).
fn ca_file_certificates(
    path: &str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TransferError> {
    let no_certificate = |detail: String| {
        TransferError::new(
            ErrorContext::LocalFile,
            ErrorKind::CaFile,
            format!("the CA file {path} holds no PEM certificate{detail}"),
        )
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| no_certificate(format!(": {e}")))?;
    if certs.is_empty() {
        return Err(no_certificate(String::new()));
    }
    Ok(certs)
}

/// A request for a download's content: the job's headers and credentials, and the
/// content asked for as it is stored (`Accept-Encoding: identity`) unless the job sets its
/// own `Accept-Encoding`. Without the header any coding is acceptable (RFC 9110
/// §12.5.3); whatever coding arrives anyway is stored as sent, never decoded.
pub fn for_download(req: RequestBuilder, options: &JobOptions) -> RequestBuilder {
    let req = decorate(req, options);
    if options
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("accept-encoding"))
    {
        req
    } else {
        req.header(reqwest::header::ACCEPT_ENCODING, "identity")
    }
}

/// The method of a job's download requests: its own (BITS's `SetHttpMethod`), else GET.
/// The service checked it is a token.
pub fn download_method(options: &JobOptions) -> reqwest::Method {
    method_or(options, reqwest::Method::GET)
}

/// The job's own method, else `default`.
pub fn method_or(options: &JobOptions, default: reqwest::Method) -> reqwest::Method {
    options
        .http_method
        .as_deref()
        .and_then(|m| reqwest::Method::from_bytes(m.as_bytes()).ok())
        .unwrap_or(default)
}

/// Adds the job's headers and credentials to a request.
pub fn decorate(mut req: RequestBuilder, options: &JobOptions) -> RequestBuilder {
    for (name, value) in &options.headers {
        req = req.header(name.as_str(), value.as_str());
    }
    match &options.credentials {
        Some(Credentials::Basic { user, password }) => req.basic_auth(user, Some(password)),
        Some(Credentials::Bearer { token }) => req.bearer_auth(token),
        Some(Credentials::Digest { user, password }) => {
            super::digest::authorize(req, user, password)
        }
        // Added by `send` when the server asks (engine/negotiate.rs).
        Some(Credentials::Negotiate { .. }) | None => req,
    }
}

/// Sends a request built with [`decorate`] or [`for_download`]: with Negotiate
/// credentials, answering the server's challenge (engine/negotiate.rs); a redirect to
/// another origin, which reqwest leaves to this (redirect.rs), is followed here without
/// the job's secret headers and credentials. `label` names the place in errors.
pub async fn send(
    req: RequestBuilder,
    credentials: Option<&Credentials>,
    label: &str,
) -> Result<reqwest::Response, TransferError> {
    let failed = |e: reqwest::Error| super::error::from_reqwest(&e, label);
    let (client, request) = req.build_split();
    let mut request = request.map_err(failed)?;
    for _ in 0..=MAX_REDIRECTS {
        // What the next request is made from: the whole request, or (a streamed body,
        // which cannot be sent twice) its method, URL and headers.
        let copy = request.try_clone();
        let body_kept = copy.is_some();
        let shape = copy.unwrap_or_else(|| redirect::without_body(&request));
        let response = match credentials {
            // A token for each origin that asks (Kerberos tickets are per host).
            Some(Credentials::Negotiate { ccache }) => {
                let req = RequestBuilder::from_parts(client.clone(), request);
                super::negotiate::send(req, ccache.as_deref(), label).await?
            }
            _ => client.execute(request).await.map_err(failed)?,
        };
        let Some(next) = redirect::cross_origin_target(&response) else {
            return Ok(response);
        };
        match redirect::to_other_origin(&shape, body_kept, response.status(), next) {
            Some(r) => request = r,
            None => return Ok(response),
        }
    }
    Err(TransferError::new(
        ErrorContext::RemoteFile,
        ErrorKind::TooManyRedirects,
        format!("{label}: more than {MAX_REDIRECTS} redirects"),
    ))
}
