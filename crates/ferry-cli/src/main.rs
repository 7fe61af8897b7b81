//! `ferry`: the command line of ferry.

// First: `outln!` for every module after it.
#[macro_use]
mod stdout;

mod admin;
mod commands;
mod daemonlog;
mod failure;
mod fleet;
mod get;
mod help;
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
    // clap exits with 2 on a bad command line (curl's and ferry's usage code).
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
            Command::SetUrl(a) => commands::set_url(&ctx, a).await,
            Command::ReplacePrefix(a) => commands::replace_prefix(&ctx, a).await,
            Command::Resume(a) => commands::simple(&ctx, "resume", a).await,
            Command::Suspend(a) => commands::simple(&ctx, "suspend", a).await,
            Command::Cancel(a) => commands::simple(&ctx, "cancel", a).await,
            Command::Takeown(a) => commands::simple(&ctx, "takeown", a).await,
            Command::Complete(a) => commands::simple(&ctx, "complete", a).await,
            Command::Info(a) => commands::simple(&ctx, "info", a).await,
            Command::Files(a) => commands::files(&ctx, a).await,
            Command::Ranges(a) => commands::ranges(&ctx, a).await,
            Command::List(a) => commands::list(&ctx, a).await,
            Command::Set(a) => commands::set(&ctx, *a).await,
            Command::Wait(a) => commands::wait(&ctx, a).await,
            Command::Handler(c) => admin::handler(&ctx, c).await,
            Command::Query(a) => wql::query(&ctx, a).await,
            Command::Watch(a) => wql::watch(&ctx, a).await,
            Command::Daemon(c) => admin::daemon(&ctx, c).await,
            Command::Monitor(a) => monitor::run(&ctx, a).await,
            Command::Peers(c) => peers::run(&ctx, c).await,
            Command::Completions(a) => help::completions(a),
            Command::Man(a) => help::man(a),
            Command::Help(a) => help::help(a),
        }
    });
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            let report = failure::report(&e);
            failure::print(&report, ctx.json);
            report.exit_code
        }
    };
    std::process::exit(code);
}
