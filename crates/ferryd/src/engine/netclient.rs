//! The HTTP client and request options of a job: proxy, extra CA, headers, credentials.

use std::time::Duration;

use reqwest::{Client, RequestBuilder};

use super::error::TransferError;
use crate::model::{Credentials, ErrorContext, ErrorKind, JobOptions, ProxySetting};

fn builder() -> reqwest::ClientBuilder {
    Client::builder()
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(10))
        .connect_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .http2_adaptive_window(true)
        .pool_idle_timeout(Duration::from_secs(90))
}

/// The client shared by jobs with default options (one connection pool).
pub fn shared() -> Client {
    builder()
        .build()
        .expect("the HTTP client configuration is valid")
}

/// The client for a job: the shared one, or a dedicated one when the job has its own
/// proxy or CA file (`ca`: its path and the PEM bytes read as the job's owner).
pub fn for_job(
    options: &JobOptions,
    ca: Option<(&str, Vec<u8>)>,
    shared: &Client,
) -> Result<Client, TransferError> {
    if options.proxy == ProxySetting::System && options.ca_file.is_none() {
        return Ok(shared.clone());
    }
    let mut b = builder();
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
    if let Some((path, pem)) = ca {
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            TransferError::new(
                ErrorContext::LocalFile,
                ErrorKind::CaFile,
                format!("the CA file {path} holds no PEM certificate: {e}"),
            )
        })?;
        for c in certs {
            b = b.add_root_certificate(c);
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
