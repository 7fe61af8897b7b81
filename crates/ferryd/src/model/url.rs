//! What a URL says about where its bytes travel.

use std::net::IpAddr;

/// True when the URL's host is a loopback address or `localhost` (or it is a `file:`
/// URL): its bytes never cross a network link.
pub fn is_loopback_url(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    match u.host() {
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(url::Host::Ipv4(a)) => IpAddr::V4(a).is_loopback(),
        Some(url::Host::Ipv6(a)) => IpAddr::V6(a).is_loopback(),
        None => u.scheme() == "file",
    }
}
