//! Turning the transfer options `ferry get` and `ferry set` share into job properties,
//! refusing what is malformed before anything reaches the daemon.

use std::path::Path;

use anyhow::{anyhow, Result};
use ferry_client::{Credentials, JobProperties, ProxyCredentials};
use ferry_common::units;

use crate::failure::usage;
use ferry_cli::args::TransferArgs;

/// A path given on the command line, made absolute against the current folder.
pub fn absolute(p: &Path) -> Result<std::path::PathBuf> {
    if p.is_absolute() {
        Ok(p.to_owned())
    } else {
        Ok(std::env::current_dir()
            .map_err(|e| anyhow!("reading the current folder: {e}"))?
            .join(p))
    }
}

/// `Some("")` stays empty (it clears the setting); another path is made absolute.
fn absolute_or_clear(p: &Option<String>) -> Result<Option<String>> {
    Ok(match p.as_deref() {
        None => None,
        Some("") => Some(String::new()),
        Some(p) => Some(absolute(Path::new(p))?.to_string_lossy().into_owned()),
    })
}

/// The job properties of the transfer options.
pub trait TransferProperties {
    /// The properties these options set. `clear_headers` and `clear_credentials` are
    /// `ferry set`'s removals (false for `ferry get`).
    fn properties(&self, clear_headers: bool, clear_credentials: bool) -> Result<JobProperties>;
}

impl TransferProperties for TransferArgs {
    fn properties(&self, clear_headers: bool, clear_credentials: bool) -> Result<JobProperties> {
        if self.basic.is_some() as u8
            + self.bearer.is_some() as u8
            + self.negotiate as u8
            + self.digest.is_some() as u8
            + clear_credentials as u8
            > 1
        {
            return Err(usage(
                "give one of --basic, --bearer, --digest, --negotiate, --clear-credentials",
            ));
        }
        let user_password = |option: &str, value: &str| {
            value
                .split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .ok_or_else(|| usage(format!("{option} takes USER:PASSWORD (a ':' between them)")))
        };
        let credentials = if let Some(b) = &self.basic {
            let (user, password) = user_password("--basic", b)?;
            Some(Credentials::Basic { user, password })
        } else if let Some(d) = &self.digest {
            let (user, password) = user_password("--digest", d)?;
            Some(Credentials::Digest { user, password })
        } else if let Some(t) = &self.bearer {
            Some(Credentials::Bearer(t.clone()))
        } else if self.negotiate {
            Some(Credentials::negotiate())
        } else if clear_credentials {
            Some(Credentials::Clear)
        } else {
            None
        };
        let headers = if clear_headers {
            if !self.headers.is_empty() {
                return Err(usage("--clear-headers and --header together: give one"));
            }
            Some(Vec::new())
        } else if self.headers.is_empty() {
            None
        } else {
            Some(self.headers.clone())
        };
        Ok(JobProperties {
            headers,
            credentials,
            proxy: self.proxy.clone(),
            ca_file: absolute_or_clear(&self.ca_file)?,
            bandwidth_limit: self
                .bandwidth
                .as_deref()
                .map(|r| units::parse_rate(r).map_err(|e| usage(format!("--bandwidth: {e}"))))
                .transpose()?,
            max_transfer_time_secs: self.max_transfer_time.map(|d| d.as_secs()),
            insecure_tls: if self.secure {
                Some(false)
            } else {
                self.insecure.then_some(true)
            },
            proxy_credentials: match self.proxy_user.as_deref() {
                None => None,
                Some("") => Some(ProxyCredentials::Clear),
                Some(v) => {
                    let (user, password) = user_password("--proxy-user", v)?;
                    Some(ProxyCredentials::Basic { user, password })
                }
            },
            redirect_policy: self.redirect_policy,
            pinned_public_keys: self.pinned_public_key.as_deref().map(|p| {
                p.split(';')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect()
            }),
            crl_file: absolute_or_clear(&self.crl_file)?,
            client_certificate: absolute_or_clear(&self.client_cert)?,
            client_key: absolute_or_clear(&self.client_key)?,
            max_download_size: self
                .max_download_size
                .as_deref()
                .map(|s| {
                    units::parse_size(s).map_err(|e| usage(format!("--max-download-size: {e}")))
                })
                .transpose()?,
            http_method: self.http_method.clone(),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parity_tls_and_auth_options_become_properties() {
        let a = TransferArgs {
            digest: Some("dee:pw:x".into()),
            proxy_user: Some("pu:pp".into()),
            redirect_policy: Some(ferry_common::RedirectPolicy::Disallow),
            pinned_public_key: Some("sha256//a; sha256//b;".into()),
            crl_file: Some("/etc/crl.pem".into()),
            client_cert: Some("/etc/c.pem".into()),
            client_key: Some("".into()),
            ..Default::default()
        };
        let p = a.properties(false, false).unwrap();
        assert_eq!(
            p.credentials,
            Some(Credentials::Digest {
                user: "dee".into(),
                password: "pw:x".into()
            })
        );
        assert_eq!(
            p.proxy_credentials,
            Some(ProxyCredentials::Basic {
                user: "pu".into(),
                password: "pp".into()
            })
        );
        assert_eq!(
            p.redirect_policy,
            Some(ferry_common::RedirectPolicy::Disallow)
        );
        assert_eq!(
            p.pinned_public_keys,
            Some(vec!["sha256//a".to_string(), "sha256//b".to_string()])
        );
        assert_eq!(p.crl_file.as_deref(), Some("/etc/crl.pem"));
        assert_eq!(p.client_certificate.as_deref(), Some("/etc/c.pem"));
        assert_eq!(p.client_key.as_deref(), Some(""), "\"\" clears");
        let cleared = TransferArgs {
            proxy_user: Some("".into()),
            pinned_public_key: Some("".into()),
            ..Default::default()
        }
        .properties(false, false)
        .unwrap();
        assert_eq!(cleared.proxy_credentials, Some(ProxyCredentials::Clear));
        assert_eq!(cleared.pinned_public_keys, Some(Vec::new()));
        let two = TransferArgs {
            basic: Some("a:b".into()),
            digest: Some("a:b".into()),
            ..Default::default()
        };
        assert!(two.properties(false, false).is_err());
    }

    #[test]
    fn every_option_becomes_a_property() {
        let a = TransferArgs {
            headers: vec!["X-A: b".into()],
            basic: Some("me:secret:with:colons".into()),
            bearer: None,
            negotiate: false,
            proxy: Some("none".into()),
            ca_file: Some("/etc/ca.pem".into()),
            bandwidth: Some("1MiB/s".into()),
            max_transfer_time: Some(std::time::Duration::from_secs(90)),
            insecure: true,
            max_download_size: Some("2MiB".into()),
            http_method: Some("POST".into()),
            ..Default::default()
        };
        let p = a.properties(false, false).unwrap();
        assert_eq!(p.max_download_size, Some(2 << 20));
        assert_eq!(p.http_method.as_deref(), Some("POST"));
        assert_eq!(p.insecure_tls, Some(true));
        assert_eq!(p.headers, Some(vec!["X-A: b".to_string()]));
        assert_eq!(
            p.credentials,
            Some(Credentials::Basic {
                user: "me".into(),
                password: "secret:with:colons".into()
            })
        );
        assert_eq!(p.proxy.as_deref(), Some("none"));
        assert_eq!(p.ca_file.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(p.bandwidth_limit, Some(1 << 20));
        assert_eq!(p.max_transfer_time_secs, Some(90));
    }

    #[test]
    fn conflicting_or_malformed_options_are_refused() {
        let both = TransferArgs {
            basic: Some("a:b".into()),
            bearer: Some("t".into()),
            ..Default::default()
        };
        assert!(both.properties(false, false).is_err());
        let negotiate_and_basic = TransferArgs {
            basic: Some("a:b".into()),
            negotiate: true,
            ..Default::default()
        };
        let e = negotiate_and_basic
            .properties(false, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--negotiate"), "{e}");
        let no_colon = TransferArgs {
            basic: Some("user".into()),
            ..Default::default()
        };
        let e = no_colon.properties(false, false).unwrap_err().to_string();
        assert!(e.contains("USER:PASSWORD"), "{e}");
        let bad_rate = TransferArgs {
            bandwidth: Some("fast".into()),
            ..Default::default()
        };
        let e = bad_rate.properties(false, false).unwrap_err().to_string();
        assert!(e.contains("--bandwidth"), "{e}");
    }
}
