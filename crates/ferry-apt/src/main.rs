//! `/usr/lib/apt/methods/ferry` (and `ferry+http`, `ferry+https`): apt starts it and talks
//! to it over standard input and output.
//!
//! Order matters: capabilities out, configuration in, the sandbox user taken (before
//! any thread or connection exists), then the runtime and the conversation.

use std::io::BufReader;

use ferry_apt::message::Reader;
use ferry_apt::method::{self, Output};
use ferry_apt::privs;
use ferry_apt::settings::Settings;

fn main() {
    let out = Output::new(std::io::stdout());
    out.send(&method::capabilities());
    let start =
        match method::read_until_configuration(Reader::new(BufReader::new(std::io::stdin()))) {
            Ok(s) => s,
            Err(e) => {
                out.send(&method::general_failure(&format!(
                    "ferry: a message from apt: {e}"
                )));
                std::process::exit(100);
            }
        };
    let Some(configuration) = start.configuration else {
        // apt only wanted the capabilities.
        return;
    };
    let settings = match Settings::from_configuration(&configuration) {
        Ok(s) => s,
        Err(e) => {
            out.send(&method::general_failure(&format!("ferry: {e}")));
            std::process::exit(100);
        }
    };
    if let Some(user) = settings
        .sandbox_user
        .as_deref()
        .filter(|_| !settings.no_drop_privs)
    {
        if let Err(e) = privs::drop_to(user) {
            out.send(&method::general_failure(&format!("ferry: {e}")));
            std::process::exit(112);
        }
    }
    // apt's messages are read on a thread of their own (a blocking pipe) and handed over.
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let mut reader = start.reader;
    std::thread::spawn(move || {
        while let Ok(Some(m)) = reader.next_message() {
            if tx.blocking_send(m).is_err() {
                break;
            }
        }
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("start the tokio runtime");
    let code = runtime.block_on(method::serve(settings, start.early, rx, out));
    // Jobs are suspended; nothing else needs to finish (the reader thread blocks on
    // apt's pipe).
    runtime.shutdown_background();
    std::process::exit(code);
}
