//! The HTTP client and request options of a job: proxy, extra CA, headers, credentials.

use std::time::Duration;

use reqwest::{Client, RequestBuilder};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::error::TransferError;
use super::tls;
use crate::model::{Credentials, ErrorContext, ErrorKind, JobOptions, ProxySetting};

/// A client builder with ferry's settings and TLS configuration (see [`tls`]).
fn builder(tls: rustls::ClientConfig) -> reqwest::ClientBuilder {
    Client::builder()
        .use_preconfigured_tls(tls)
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(10))
        .connect_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .http2_adaptive_window(true)
        .pool_idle_timeout(Duration::from_secs(90))
}

/// The client shared by jobs with default options (one connection pool).
pub fn shared() -> Client {
    let tls =
        tls::client_config(Vec::new(), tls::Check::Verify).expect("the TLS configuration is valid");
    builder(tls)
        .build()
        .expect("the HTTP client configuration is valid")
}

/// The client for a job: the shared one, or a dedicated one when the job has its own
/// proxy or CA file, checks no certificate (`insecure_tls`) (`ca`: its path and the PEM bytes read as the job's owner) or yields
/// to other traffic (`own_pool`: the window clamps of its connections must never hold
/// back another job that would reuse them from a shared pool).
pub fn for_job(
    options: &JobOptions,
    ca: Option<(&str, Vec<u8>)>,
    shared: &Client,
    own_pool: bool,
) -> Result<Client, TransferError> {
    if options.proxy == ProxySetting::System
        && options.ca_file.is_none()
        && !options.insecure_tls
        && !own_pool
    {
        return Ok(shared.clone());
    }
    let extra_roots = match &ca {
        Some((path, pem)) => ca_file_certificates(path, pem)?,
        None => Vec::new(),
    };
    let check = if options.insecure_tls {
        tls::Check::Insecure
    } else {
        tls::Check::Verify
    };
    let tls = tls::client_config(extra_roots, check).map_err(|e| {
        let path = ca.as_ref().map(|(path, _)| *path).unwrap_or_default();
        TransferError::new(
            ErrorContext::LocalFile,
            ErrorKind::CaFile,
            format!("the CA file {path} holds a certificate ferry cannot use: {e}"),
        )
    })?;
    let mut b = builder(tls);
    match &options.proxy {
        ProxySetting::System => {}
        ProxySetting::None => b = b.no_proxy(),
        ProxySetting::Url(u) => {
            let p = reqwest::Proxy::all(u).map_err(|e| {
                TransferError::new(
                    ErrorContext::Transport,
                    ErrorKind::BadProxy,
                    format!("proxy {u}: {e}"),
                )
            })?;
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
        None => req,
    }
}
