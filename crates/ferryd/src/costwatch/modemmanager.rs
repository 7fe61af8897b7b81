//! The roaming watcher: asks ModemManager (`org.freedesktop.ModemManager1` on the system
//! bus) for its modems (`GetManagedObjects` at `/org/freedesktop/ModemManager1`) and calls
//! the network roaming when a modem is connected (`Modem.State` = CONNECTED) and
//! registered as roaming (`Modem3gpp.RegistrationState` ROAMING, ROAMING_SMS_ONLY or
//! ROAMING_CSFB_NOT_PREFERRED). It reads the modems again on every signal ModemManager
//! sends under its path (properties changed, modems added or removed) and when the name
//! changes owner. Without ModemManager (most machines have no modem) nothing roams.
//!
//! What it does not know: whether the default route goes through that modem (a laptop
//! with a connected roaming modem and Wi-Fi as its default route is taken as roaming).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use zbus::fdo::{DBusProxy, ObjectManagerProxy};
use zbus::names::BusName;
use zbus::zvariant::OwnedValue;

use super::NetworkCost;

const MM_NAME: &str = "org.freedesktop.ModemManager1";
const MM_PATH: &str = "/org/freedesktop/ModemManager1";
const MODEM: &str = "org.freedesktop.ModemManager1.Modem";
const MODEM_3GPP: &str = "org.freedesktop.ModemManager1.Modem.Modem3gpp";
/// `MMModemState` CONNECTED.
const STATE_CONNECTED: i32 = 11;
/// `MMModem3gppRegistrationState` values that mean roaming.
const ROAMING_STATES: [u32; 3] = [5, 7, 10];

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Follows whether a modem roams until the task is dropped, updating `cost` and calling
/// `on_change` on each change of the network's cost state. Without a system bus it says
/// so once and returns (nothing roams).
pub async fn watch(cost: Arc<NetworkCost>, on_change: impl Fn() + Send + 'static) {
    let report = |roaming: bool, source: String| {
        if cost.observe_roaming(roaming, source) {
            tracing::info!(roaming, "network cost changed");
            on_change();
        }
    };
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT, zbus::Connection::system()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return report(
                false,
                format!("no system D-Bus ({e}): taken as not roaming"),
            )
        }
        Err(_) => {
            return report(
                false,
                "no system D-Bus (it did not answer): taken as not roaming".into(),
            )
        }
    };
    if let Err(e) = follow(&conn, &report).await {
        tracing::warn!("following ModemManager failed ({e}); the network is taken as not roaming");
        report(
            false,
            format!("following ModemManager failed ({e}): taken as not roaming"),
        );
    }
}

async fn follow(conn: &zbus::Connection, report: &impl Fn(bool, String)) -> zbus::Result<()> {
    let dbus = DBusProxy::new(conn).await?;
    // Subscribed before the first look, so nothing between is missed.
    let mut owners = dbus
        .receive_name_owner_changed_with_args(&[(0, MM_NAME)])
        .await?;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .path_namespace(MM_PATH)?
        .build();
    let mut signals = zbus::MessageStream::for_match_rule(rule, conn, Some(64)).await?;
    let name = BusName::try_from(MM_NAME)?;
    loop {
        if dbus.name_has_owner(name.clone()).await? {
            match modems(conn).await {
                Ok(objects) => {
                    let roaming = roaming_modem(&objects);
                    let source = match &roaming {
                        Some(path) => format!("ModemManager (modem {path} is roaming)"),
                        None => "ModemManager (no connected modem is roaming)".into(),
                    };
                    report(roaming.is_some(), source);
                }
                Err(e) => report(
                    false,
                    format!("ModemManager did not list its modems ({e}): taken as not roaming"),
                ),
            }
        } else {
            report(
                false,
                "ModemManager is not running: taken as not roaming".into(),
            );
        }
        tokio::select! {
            s = owners.next() => if s.is_none() { return Ok(()) },
            m = signals.next() => if m.is_none() { return Ok(()) },
        }
    }
}

type Objects = HashMap<
    zbus::zvariant::OwnedObjectPath,
    HashMap<zbus::names::OwnedInterfaceName, HashMap<String, OwnedValue>>,
>;

async fn modems(conn: &zbus::Connection) -> zbus::Result<Objects> {
    let om = ObjectManagerProxy::builder(conn)
        .destination(MM_NAME)?
        .path(MM_PATH)?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    Ok(om.get_managed_objects().await?)
}

/// The path of a connected modem registered as roaming, if any.
fn roaming_modem(objects: &Objects) -> Option<String> {
    objects.iter().find_map(|(path, ifaces)| {
        let property = |iface: &str, name: &str| {
            ifaces
                .iter()
                .find(|(i, _)| i.as_str() == iface)
                .and_then(|(_, props)| props.get(name))
        };
        let connected = property(MODEM, "State")
            .and_then(|v| v.downcast_ref::<i32>().ok())
            .is_some_and(|s| s == STATE_CONNECTED);
        let roaming = property(MODEM_3GPP, "RegistrationState")
            .and_then(|v| v.downcast_ref::<u32>().ok())
            .is_some_and(|r| ROAMING_STATES.contains(&r));
        (connected && roaming).then(|| path.to_string())
    })
}
