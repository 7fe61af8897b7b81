//! `ferry`: the command line of ferry.

mod admin;
mod commands;
mod fleet;
mod get;
mod hints;
mod monitor;
mod options;
mod output;
mod peers;
mod progress;
#[cfg(test)]
mod testdata;
mod wql;

use clap::Parser;

use commands::Ctx;
use ferry_cli::args::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let ctx = Ctx {
        json: cli.json,
        // The system-wide daemon is started by systemd, never by a user's command.
        autostart: !cli.no_autostart && !cli.system,
        socket: cli
            .socket
            .clone()
            .or_else(|| cli.system.then(ferry_common::paths::system_socket_path)),
        system: cli.system,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Get(a) => get::get(&ctx, *a).await,
            Command::Create(a) => commands::create(&ctx, a).await,
            Command::AddFile(a) => commands::add_file(&ctx, a).await,
            Command::Resume(a) => commands::simple(&ctx, "resume", a).await,
            Command::Suspend(a) => commands::simple(&ctx, "suspend", a).await,
            Command::Cancel(a) => commands::simple(&ctx, "cancel", a).await,
            Command::Complete(a) => commands::simple(&ctx, "complete", a).await,
            Command::Info(a) => commands::simple(&ctx, "info", a).await,
            Command::Files(a) => commands::simple(&ctx, "files", a).await,
            Command::List(a) => commands::list(&ctx, a).await,
            Command::Set(a) => commands::set(&ctx, *a).await,
            Command::Wait(a) => commands::wait(&ctx, a).await,
            Command::Handler(c) => admin::handler(&ctx, c).await,
            Command::Query(a) => wql::query(&ctx, a).await,
            Command::Watch(a) => wql::watch(&ctx, a).await,
            Command::Daemon(c) => admin::daemon(&ctx, c).await,
            Command::Monitor(a) => monitor::run(&ctx, a).await,
            Command::Peers(c) => peers::run(&ctx, c).await,
        }
    });
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ferry: {e:#}");
            if let Some(client_error) = e.downcast_ref::<ferry_client::Error>() {
                if let Some(hint) = hints::for_call(client_error) {
                    eprintln!("hint: {hint}");
                }
                // The daemon's refusals carry a gRPC status code worth showing; the
                // library turns transport failures into sentences of their own.
                if let ferry_client::Error::Status(s) = client_error {
                    eprintln!("(code: {:?})", s.code());
                }
            }
            1
        }
    };
    std::process::exit(code);
}
