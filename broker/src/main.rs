//! `laminar`: the broker. With no arguments it serves 127.0.0.1:9092 with data
//! under `./data`. See docs/operations.md for every flag.

mod api;
mod budget;
mod cluster;
mod conn_caps;
mod connection;
mod context;
mod errors;
mod etcd;
mod failpoints;
#[cfg(test)]
mod fuzz;
mod group;
mod log_limit;
mod metrics;
mod partition_dirs;
mod placement;
mod producer_ids;
mod replication;
mod response;
mod router;
mod security;
mod server;
mod settings;
mod shard;
mod topic_config;
mod topic_config_table;
mod topic_name;

use clap::Parser;

use settings::{Flags, LogFormat, Settings};

fn main() {
    let flags = Flags::parse();
    let settings = match Settings::load(&flags) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("laminar: {e}");
            std::process::exit(2);
        }
    };
    if flags.print_config {
        print!("{}", settings.to_toml());
        return;
    }
    init_logging(settings.logging_format);
    install_panic_hook();
    if let Err(e) = failpoints::init_from_env().and_then(|()| server::run(settings.server_options(&flags.security)?)) {
        eprintln!("laminar: {e:#}");
        std::process::exit(1);
    }
}

/// Log lines go to stderr, filtered by LAMINAR_LOG, else RUST_LOG (any
/// tracing-subscriber filter, e.g. `info,laminar::group=debug`), else `info`.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LAMINAR_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        // One JSON object per line: timestamp, level, target, fields (the
        // message among them) and the spans it happened in.
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}

/// A panic anywhere ends the process, loudly. Shards, the group ticker and
/// log writers are tasks whose panics tokio would catch and drop, leaving a
/// broker half alive: holding its lease and leadership of partitions and
/// groups it can no longer serve. Dead, its lease expires and others take
/// over. The hook runs before any unwinding, so nothing catches the panic
/// first (the engine's own writer guard included).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("<unnamed>");
        let location = info.location().map(ToString::to_string).unwrap_or_default();
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("<non-string panic payload>");
        // Captured only when RUST_BACKTRACE / RUST_LIB_BACKTRACE ask for it.
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!(thread, %location, %backtrace, "panic: {message}; aborting");
        } else {
            tracing::error!(thread, %location, "panic: {message}; aborting (RUST_BACKTRACE=1 for a backtrace)");
        }
        // Plain stderr too: the panic may have come from inside the logger.
        eprintln!("laminar: thread '{thread}' panicked at {location}: {message}; aborting");
        std::process::abort();
    }));
}
