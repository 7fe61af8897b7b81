//! The D-Bus watcher: reads NetworkManager's `Metered` property
//! (`org.freedesktop.NetworkManager` at `/org/freedesktop/NetworkManager`) from the system
//! bus (`$DBUS_SYSTEM_BUS_ADDRESS`, else the standard socket), follows its
//! `PropertiesChanged` signal, and follows the name itself (`NameOwnerChanged`):
//! NetworkManager starting after ferryd is picked up, and its leaving makes the network
//! unmetered again.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use zbus::fdo::{DBusProxy, PropertiesProxy};
use zbus::names::{BusName, InterfaceName};

use super::{NetworkCost, NmMetered};

const NM_NAME: &str = "org.freedesktop.NetworkManager";
const NM_PATH: &str = "/org/freedesktop/NetworkManager";
const NM_INTERFACE: &str = "org.freedesktop.NetworkManager";

/// The longest the connection to the system bus may take (a bus that accepts and never
/// answers must not hold the watcher forever).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the watcher ended with the name's owner.
enum Followed {
    /// NetworkManager left the bus.
    Left,
    /// The bus connection ended.
    BusClosed,
}

/// Follows whether the network is metered until the task is dropped, updating `cost`
/// and calling `on_change` on each change of the network's cost state. Without a system
/// bus it says so once and returns (the network stays unmetered).
pub async fn watch(cost: Arc<NetworkCost>, on_change: impl Fn() + Send + 'static) {
    let report = |metered: bool, source: String| {
        if cost.observe(metered, source) {
            tracing::info!(metered, "network cost changed");
            on_change();
        }
    };
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT, zbus::Connection::system()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return no_bus(&cost, &report, e.to_string()),
        Err(_) => return no_bus(&cost, &report, "it did not answer".into()),
    };
    if let Err(e) = follow_name(&conn, &report).await {
        tracing::warn!(
            "following NetworkManager on the system bus failed ({e}); the network is taken \
             as unmetered"
        );
        report(
            false,
            format!("following NetworkManager failed ({e}): taken as unmetered"),
        );
    }
}

fn no_bus(cost: &NetworkCost, report: &impl Fn(bool, String), why: String) {
    tracing::info!(
        "no system D-Bus ({why}): NetworkManager cannot be asked whether the network is \
         metered; it is taken as unmetered"
    );
    report(
        false,
        format!("no system D-Bus ({why}): taken as unmetered"),
    );
    debug_assert!(!cost.state().metered);
}

/// Follows the name `org.freedesktop.NetworkManager`: while it is owned, its `Metered`
/// property; while not, waits for it.
async fn follow_name(conn: &zbus::Connection, report: &impl Fn(bool, String)) -> zbus::Result<()> {
    let dbus = DBusProxy::new(conn).await?;
    // Subscribed before asking, so an owner arriving in between is not missed.
    let mut owners = dbus
        .receive_name_owner_changed_with_args(&[(0, NM_NAME)])
        .await?;
    let name = BusName::try_from(NM_NAME)?;
    let mut said_absent = false;
    loop {
        if dbus.name_has_owner(name.clone()).await? {
            match follow_metered(conn, report, &mut owners).await? {
                Followed::BusClosed => return Ok(()),
                Followed::Left => {
                    tracing::info!(
                        "NetworkManager left the system bus: the network is taken as unmetered"
                    );
                    report(
                        false,
                        "NetworkManager left the system bus: taken as unmetered".into(),
                    );
                    said_absent = true;
                    continue;
                }
            }
        }
        // Said once (a NetworkManager that just left was reported as such).
        if !said_absent {
            tracing::info!(
                "NetworkManager is not on the system bus: the network is taken as unmetered \
                 (followed if NetworkManager starts)"
            );
            report(
                false,
                "NetworkManager is not running: taken as unmetered".into(),
            );
            said_absent = true;
        }
        // Wait for an owner.
        loop {
            let Some(signal) = owners.next().await else {
                return Ok(());
            };
            if signal.args().is_ok_and(|a| a.new_owner().is_some()) {
                break;
            }
        }
    }
}

/// Reads `Metered` and follows its changes until NetworkManager leaves the bus.
async fn follow_metered(
    conn: &zbus::Connection,
    report: &impl Fn(bool, String),
    owners: &mut zbus::fdo::NameOwnerChangedStream,
) -> zbus::Result<Followed> {
    let props = PropertiesProxy::builder(conn)
        .destination(NM_NAME)?
        .path(NM_PATH)?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let mut changes = props.receive_properties_changed().await?;
    let interface = InterfaceName::from_static_str(NM_INTERFACE)?;
    let value = props.get(interface.clone(), "Metered").await?;
    let first = NmMetered::from_u32(u32::try_from(value).unwrap_or(0));
    tracing::info!(
        metered = first.as_str(),
        "following NetworkManager's Metered property"
    );
    report(first.is_metered(), source_of(first));
    loop {
        tokio::select! {
            signal = changes.next() => {
                let Some(signal) = signal else { return Ok(Followed::BusClosed) };
                let Ok(args) = signal.args() else { continue };
                if args.interface_name().as_str() != NM_INTERFACE {
                    continue;
                }
                if let Some(v) = args.changed_properties().get("Metered") {
                    if let Ok(v) = u32::try_from(v) {
                        let m = NmMetered::from_u32(v);
                        report(m.is_metered(), source_of(m));
                    }
                }
            }
            signal = owners.next() => {
                let Some(signal) = signal else { return Ok(Followed::BusClosed) };
                let Ok(args) = signal.args() else { continue };
                if args.new_owner().is_none() {
                    return Ok(Followed::Left);
                }
                // A new NetworkManager took the name over: read its value.
                let value = props.get(interface.clone(), "Metered").await?;
                let m = NmMetered::from_u32(u32::try_from(value).unwrap_or(0));
                report(m.is_metered(), source_of(m));
            }
        }
    }
}

fn source_of(m: NmMetered) -> String {
    format!("NetworkManager (Metered: {})", m.as_str())
}
