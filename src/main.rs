//! The `victor` binary: parses the command line, runs it, and turns the outcome into an exit code.

use clap::Parser;
use victor::cli::{self, Cli};

fn main() {
    let cli = Cli::parse();
    if cli::is_client_command(&cli) {
        // A client printing into a closed pipe (`victor task list --json | head`) ends quietly,
        // as other command-line tools do. The server keeps Rust's default, so that a task that
        // closes its stdin cannot take the server down.
        // SAFETY: called before any other thread exists; resetting a signal disposition.
        unsafe {
            let _ = nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            );
        }
    }
    // One TLS implementation in the whole process (aws-lc-rs, the one reqwest uses): code that
    // asks rustls for the process default, such as the WebSocket client, finds it set.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("victor: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(cli::run(cli)) {
        Ok(exit) => exit.code(),
        Err(error) => {
            let message = format!("{error:#}");
            anstream::eprintln!("victor: {message}");
            1
        }
    };
    // Background tasks (a stream still open, a blocking read of stdin) must not hold us up.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}
