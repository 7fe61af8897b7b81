//! What the metered-network tests run: a private D-Bus bus daemon (the real
//! `dbus-daemon`, with a configuration of the test's own and its socket in a temporary
//! folder), and a stand-in for NetworkManager on it — a zbus object server that owns
//! `org.freedesktop.NetworkManager`, serves the `Metered` property at
//! `/org/freedesktop/NetworkManager` and emits `PropertiesChanged` when the test changes
//! it. ferryd is pointed at the bus with `DBUS_SYSTEM_BUS_ADDRESS`; its real zbus client
//! path runs unchanged. (The real NetworkManager starts on such a bus, but cannot manage
//! any interface where no udev runs, so its `Metered` cannot be switched: see the
//! closing note of `polite_metered.rs`.) A stand-in for ModemManager serves one
//! connected modem whose roaming the test switches.

// Each test file uses a different subset of the stand-ins.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// NetworkManager's `NMMetered` values the tests switch between.
pub const NM_METERED_YES: u32 = 1;
pub const NM_METERED_NO: u32 = 2;
/// NetworkManager's guess for a mobile broadband connection.
pub const NM_METERED_GUESS_YES: u32 = 3;

const NM_NAME: &str = "org.freedesktop.NetworkManager";
const NM_PATH: &str = "/org/freedesktop/NetworkManager";

/// A private bus: `dbus-daemon` on a socket in a temporary folder, killed when dropped.
pub struct PrivateBus {
    child: Child,
    dir: tempfile::TempDir,
}

impl PrivateBus {
    /// Starts the bus and waits (bounded) until its socket exists.
    pub fn start() -> PrivateBus {
        let dir = tempfile::Builder::new()
            .prefix("ferry-bus-")
            .tempdir()
            .unwrap();
        let socket = dir.path().join("bus");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .unwrap();
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("dbus-daemon (Debian package dbus) is installed");
        let mut bus = PrivateBus { child, dir };
        let end = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            if let Ok(Some(status)) = bus.child.try_wait() {
                panic!("dbus-daemon exited ({status}) before listening");
            }
            assert!(
                Instant::now() < end,
                "dbus-daemon did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        bus
    }

    /// The bus's address, as `DBUS_SYSTEM_BUS_ADDRESS` takes it.
    pub fn address(&self) -> String {
        format!("unix:path={}", self.socket().display())
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("bus")
    }

    /// A prefix that runs ferryd with this bus as its system bus (`env` execs it, so the
    /// daemon's pid is kept).
    pub fn daemon_prefix(&self) -> Vec<String> {
        vec![
            "env".into(),
            format!("DBUS_SYSTEM_BUS_ADDRESS={}", self.address()),
        ]
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The object NetworkManager serves, reduced to the property ferryd reads.
struct NetworkManagerObject {
    metered: u32,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager")]
impl NetworkManagerObject {
    #[zbus(property)]
    fn metered(&self) -> u32 {
        self.metered
    }
}

/// The stand-in for NetworkManager: owns its name on the bus while it lives.
pub struct NetworkManagerStandIn {
    conn: zbus::Connection,
}

impl NetworkManagerStandIn {
    /// Joins `bus`, serves `Metered` = `metered` and takes NetworkManager's name.
    pub async fn start(bus: &PrivateBus, metered: u32) -> NetworkManagerStandIn {
        let conn = zbus::connection::Builder::address(bus.address().as_str())
            .unwrap()
            .serve_at(NM_PATH, NetworkManagerObject { metered })
            .unwrap()
            .name(NM_NAME)
            .unwrap()
            .build()
            .await
            .expect("the stand-in joins the private bus");
        NetworkManagerStandIn { conn }
    }

    /// Changes `Metered` and emits `PropertiesChanged`, as NetworkManager does when the
    /// primary connection's metered setting changes.
    pub async fn set_metered(&self, metered: u32) {
        let iface = self
            .conn
            .object_server()
            .interface::<_, NetworkManagerObject>(NM_PATH)
            .await
            .unwrap();
        let mut object = iface.get_mut().await;
        object.metered = metered;
        object
            .metered_changed(iface.signal_emitter())
            .await
            .unwrap();
    }
}

/// `MMModem3gppRegistrationState` values the tests switch between.
pub const MM_REGISTRATION_HOME: u32 = 1;
pub const MM_REGISTRATION_ROAMING: u32 = 5;
/// `MMModemState` CONNECTED.
const MM_STATE_CONNECTED: i32 = 11;

const MM_NAME: &str = "org.freedesktop.ModemManager1";
const MM_PATH: &str = "/org/freedesktop/ModemManager1";
const MM_MODEM_PATH: &str = "/org/freedesktop/ModemManager1/Modem/0";

/// A modem's main interface, reduced to its state.
struct ModemObject {
    state: i32,
}

#[zbus::interface(name = "org.freedesktop.ModemManager1.Modem")]
impl ModemObject {
    #[zbus(property)]
    fn state(&self) -> i32 {
        self.state
    }
}

/// A modem's 3GPP interface, reduced to its registration.
struct Modem3gppObject {
    registration: u32,
}

#[zbus::interface(name = "org.freedesktop.ModemManager1.Modem.Modem3gpp")]
impl Modem3gppObject {
    #[zbus(property)]
    fn registration_state(&self) -> u32 {
        self.registration
    }
}

/// The stand-in for ModemManager: owns its name, serves the standard object manager at
/// `/org/freedesktop/ModemManager1` and one connected modem under it, whose 3GPP
/// registration the test switches (home, roaming) with `PropertiesChanged`, as
/// ModemManager does.
pub struct ModemManagerStandIn {
    conn: zbus::Connection,
}

impl ModemManagerStandIn {
    /// Joins `bus` with one connected modem registered as `registration`.
    pub async fn start(bus: &PrivateBus, registration: u32) -> ModemManagerStandIn {
        let conn = zbus::connection::Builder::address(bus.address().as_str())
            .unwrap()
            .serve_at(MM_PATH, zbus::fdo::ObjectManager)
            .unwrap()
            .serve_at(
                MM_MODEM_PATH,
                ModemObject {
                    state: MM_STATE_CONNECTED,
                },
            )
            .unwrap()
            .serve_at(MM_MODEM_PATH, Modem3gppObject { registration })
            .unwrap()
            .name(MM_NAME)
            .unwrap()
            .build()
            .await
            .expect("the stand-in joins the private bus");
        ModemManagerStandIn { conn }
    }

    /// Changes the modem's registration and emits `PropertiesChanged`.
    pub async fn set_registration(&self, registration: u32) {
        let iface = self
            .conn
            .object_server()
            .interface::<_, Modem3gppObject>(MM_MODEM_PATH)
            .await
            .unwrap();
        let mut object = iface.get_mut().await;
        object.registration = registration;
        object
            .registration_state_changed(iface.signal_emitter())
            .await
            .unwrap();
    }
}
