//! The `zsa` binary: parse the command line, set up logging, run the command. Nothing else.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // A shell asking for completions at a Tab (COMPLETE=bash zsa -- ...) is answered here.
    zsa::commands::completion::answer_if_asked();
    let cli = zsa::cli::Cli::parse();
    let daemon = matches!(cli.command, Some(zsa::cli::Cmd::Daemon(_)) | Some(zsa::cli::Cmd::Demo { .. }));
    let default = if daemon { "info" } else { "warn" };
    let json = matches!(&cli.command, Some(zsa::cli::Cmd::Daemon(a)) if a.log_format == zsa::cli::LogFormat::Json);
    let log = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("ZSA_LOG").unwrap_or_else(|_| EnvFilter::new(default)))
        .with_writer(zsa::logging::Sink);
    if json {
        // The request's span (method, path, caller) in every line logged while answering it.
        log.json().with_current_span(true).with_span_list(false).init();
    } else {
        log.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none()).init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zsa: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(zsa::commands::run(cli))
}
