//! The rtnetlink listener: subscribes to link, address and route changes, and after each
//! burst of them dumps the routing tables to see whether a usable default route exists
//! (unicast, prefix length 0, not marked `linkdown` or `dead`, IPv4 or IPv6).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_route::route::{RouteFlags, RouteMessage, RouteType};
use rtnetlink::{Handle, MulticastGroup, RouteMessageBuilder};

use super::{Change, Connectivity};

/// After a change, further messages arriving within this time are taken in the same look
/// (a link going down removes several routes and addresses at once).
const SETTLE: Duration = Duration::from_millis(50);

/// True for a route that sends everything somewhere: a unicast default route whose next
/// hop is not down.
fn is_usable_default(route: &RouteMessage) -> bool {
    let h = &route.header;
    h.destination_prefix_length == 0
        && h.kind == RouteType::Unicast
        && !h.flags.intersects(RouteFlags::Linkdown | RouteFlags::Dead)
}

/// Whether the kernel has a usable default route now (IPv4 or IPv6).
pub async fn default_route_present(handle: &Handle) -> Result<bool, rtnetlink::Error> {
    for request in [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ] {
        let mut routes = handle.route().get(request).execute();
        let mut found = false;
        while let Some(route) = routes.try_next().await? {
            found |= is_usable_default(&route);
        }
        if found {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Follows the network until the task is dropped: updates `connectivity` and calls
/// `on_change` on each change. If rtnetlink cannot be opened, says so once and returns
/// (the network is then taken as always up).
pub async fn watch(connectivity: Arc<Connectivity>, on_change: impl Fn(Change) + Send + 'static) {
    let groups = [
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
    ];
    let (conn, handle, mut messages) = match rtnetlink::new_multicast_connection(&groups) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(
                "cannot watch the network (rtnetlink: {e}); jobs will not follow it and the \
                 network is taken as always up"
            );
            return;
        }
    };
    let connection = tokio::spawn(conn);
    let mut first = true;
    loop {
        match default_route_present(&handle).await {
            Ok(online) => {
                let change = connectivity.observe(online, crate::model::mono_ms());
                if first && !online {
                    tracing::info!("no default route: jobs to remote servers wait for the network");
                }
                first = false;
                if let Some(change) = change {
                    tracing::info!(?change, "network connectivity changed");
                    on_change(change);
                }
            }
            Err(e) => tracing::warn!("reading the routing table: {e}"),
        }
        // Wait for the next change, then take the rest of its burst.
        if messages.next().await.is_none() {
            break;
        }
        while let Ok(Some(_)) = tokio::time::timeout(SETTLE, messages.next()).await {}
    }
    connection.abort();
    tracing::warn!("the rtnetlink connection closed; the network is no longer followed");
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::route::RouteHeader;

    fn route(prefix: u8, kind: RouteType, flags: RouteFlags) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header = RouteHeader::default();
        m.header.destination_prefix_length = prefix;
        m.header.kind = kind;
        m.header.flags = flags;
        m
    }

    #[test]
    fn only_a_live_unicast_default_route_counts() {
        assert!(is_usable_default(&route(
            0,
            RouteType::Unicast,
            RouteFlags::empty()
        )));
        assert!(!is_usable_default(&route(
            24,
            RouteType::Unicast,
            RouteFlags::empty()
        )));
        assert!(!is_usable_default(&route(
            0,
            RouteType::Unreachable,
            RouteFlags::empty()
        )));
        assert!(!is_usable_default(&route(
            0,
            RouteType::Unicast,
            RouteFlags::Linkdown
        )));
    }
}
