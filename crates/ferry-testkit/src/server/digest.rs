//! HTTP Digest authentication (RFC 7616, `qop=auth`) on paths given to
//! [`TestServer::require_digest`]: a request without a valid answer gets `401`
//! with a `WWW-Authenticate: Digest` challenge. The check is written here from
//! the RFC (MD5 by md-5, SHA-256 by sha2), independently of the client's crate.

use sha2::{Digest as _, Sha256};

use super::request::Head;
use super::state::key_of;
use super::TestServer;

/// The hash of a Digest challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    /// `algorithm=MD5`, RFC 2617's and still the most common.
    Md5,
    /// `algorithm=SHA-256` (RFC 7616).
    Sha256,
}

impl DigestAlgorithm {
    fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Md5 => "MD5",
            DigestAlgorithm::Sha256 => "SHA-256",
        }
    }

    fn hash(self, text: &str) -> String {
        match self {
            DigestAlgorithm::Md5 => hex::encode(md5::Md5::digest(text.as_bytes())),
            DigestAlgorithm::Sha256 => hex::encode(Sha256::digest(text.as_bytes())),
        }
    }
}

/// What a path requires.
#[derive(Debug, Clone)]
pub(super) struct DigestRequirement {
    pub(super) user: String,
    pub(super) password: String,
    pub(super) algorithm: DigestAlgorithm,
}

/// The realm, nonce and opaque of every challenge.
const REALM: &str = "ferry-testkit";
const NONCE: &str = "dcd98b7102dd2f0e8b11d0f600bfb0c093";
const OPAQUE: &str = "5ccc069c403ebaf9f0171e9517f40e41";

impl DigestRequirement {
    /// The `WWW-Authenticate` value of the challenge.
    pub(super) fn challenge(&self) -> String {
        format!(
            "Digest realm=\"{REALM}\", qop=\"auth\", algorithm={}, nonce=\"{NONCE}\", \
             opaque=\"{OPAQUE}\"",
            self.algorithm.name()
        )
    }

    /// True when `head` carries a valid answer to the challenge.
    pub(super) fn accepts(&self, head: &Head) -> bool {
        let Some(value) = head.header("authorization") else {
            return false;
        };
        let Some(params) = value
            .trim_start()
            .strip_prefix("Digest ")
            .or_else(|| value.trim_start().strip_prefix("digest "))
        else {
            return false;
        };
        let p = parse_params(params);
        let get = |k: &str| {
            p.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let (Some(user), Some(realm), Some(nonce), Some(uri), Some(response)) = (
            get("username"),
            get("realm"),
            get("nonce"),
            get("uri"),
            get("response"),
        ) else {
            return false;
        };
        let (Some(qop), Some(nc), Some(cnonce)) = (get("qop"), get("nc"), get("cnonce")) else {
            return false;
        };
        if user != self.user
            || realm != REALM
            || nonce != NONCE
            || qop != "auth"
            || uri != head.target
            || get("opaque") != Some(OPAQUE)
        {
            return false;
        }
        if let Some(a) = get("algorithm") {
            if !a.eq_ignore_ascii_case(self.algorithm.name()) {
                return false;
            }
        }
        let h = |t: &str| self.algorithm.hash(t);
        let ha1 = h(&format!("{}:{REALM}:{}", self.user, self.password));
        let ha2 = h(&format!("{}:{}", head.method, uri));
        let expected = h(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"));
        expected.eq_ignore_ascii_case(response)
    }
}

/// The `name=value` pairs of an auth-param list (values quoted or tokens).
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else {
            break;
        };
        let name = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            value = quoted[..end].to_string();
            rest = quoted.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        out.push((name, value));
    }
    out
}

impl TestServer {
    /// From now on, every request of `path` must answer a Digest challenge
    /// (`qop=auth`, `algorithm` as given) for `user` and `password`; one that
    /// does not gets `401` and the challenge. Requests are recorded (see
    /// [`requests`](Self::requests)) either way.
    pub fn require_digest(
        &self,
        path: &str,
        user: &str,
        password: &str,
        algorithm: DigestAlgorithm,
    ) {
        self.shared.lock().digest.insert(
            key_of(path),
            DigestRequirement {
                user: user.into(),
                password: password.into(),
                algorithm,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7616_example_verifies() {
        // RFC 7616 §3.9.1, SHA-256 ("Mufasa", "Circle of Life").
        let alg = DigestAlgorithm::Sha256;
        let ha1 = alg.hash("Mufasa:http-auth@example.org:Circle of Life");
        let ha2 = alg.hash("GET:/dir/index.html");
        let response = alg.hash(&format!(
            "{ha1}:7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v:00000001:\
             f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ:auth:{ha2}"
        ));
        assert_eq!(
            response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert_eq!(
            parse_params(r#"username="a b", nc=00000001, qop=auth, uri="/x?y=1""#),
            [
                ("username".to_string(), "a b".to_string()),
                ("nc".into(), "00000001".into()),
                ("qop".into(), "auth".into()),
                ("uri".into(), "/x?y=1".into()),
            ]
        );
    }
}
