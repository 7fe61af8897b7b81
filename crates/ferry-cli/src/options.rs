//! Turning the transfer options `ferry get` and `ferry set` share into job properties,
//! refusing what is malformed before anything reaches the daemon.

use std::path::Path;

use anyhow::{anyhow, Result};
use ferry_client::{Credentials, JobProperties};
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
        if self.basic.is_some() as u8 + self.bearer.is_some() as u8 + clear_credentials as u8 > 1 {
            return Err(usage("give one of --basic, --bearer, --clear-credentials"));
        }
        let credentials = if let Some(b) = &self.basic {
            let (user, password) = b
                .split_once(':')
                .ok_or_else(|| usage("--basic takes USER:PASSWORD (a ':' between them)"))?;
            Some(Credentials::Basic {
                user: user.into(),
                password: password.into(),
            })
        } else if let Some(t) = &self.bearer {
            Some(Credentials::Bearer(t.clone()))
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
            insecure_tls: self.insecure.then_some(true),
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
    fn every_option_becomes_a_property() {
        let a = TransferArgs {
            headers: vec!["X-A: b".into()],
            basic: Some("me:secret:with:colons".into()),
            bearer: None,
            proxy: Some("none".into()),
            ca_file: Some("/etc/ca.pem".into()),
            bandwidth: Some("1MiB/s".into()),
            max_transfer_time: Some(std::time::Duration::from_secs(90)),
            insecure: true,
            max_download_size: Some("2MiB".into()),
            http_method: Some("POST".into()),
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
