//! The `victor` binary: parses the command line, runs it, and turns the outcome into an exit code.

use clap::Parser;
use victor::cli::{self, Cli};
use victor::render::worker;

fn main() {
    // `victor render-worker`, the warm process the built-in renderers run in (see
    // victor::render::worker): a private protocol rather than a command for people, so it is
    // kept out of clap (and of the completions and manual pages), and it starts without the
    // async runtime it does not need.
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(std::ffi::OsStr::new(worker::SUBCOMMAND)) {
        std::process::exit(worker::main());
    }
    let cli = Cli::parse();
    if cli::is_client_command(&cli) {
        // A client printing into a closed pipe (`victor task list --json | head`) ends quietly,
        // as other command-line tools do. The server keeps Rust's default, so that a task that
        // closes its stdin cannot take the server down.
        // SAFETY: called before any other thread exists; the handler is async-signal-safe.
        unsafe {
            let _ = nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::Handler(on_sigpipe),
            );
        }
    } else {
        keep_freed_memory();
    }
    // One TLS implementation in the whole process (aws-lc-rs, the one reqwest uses): code that
    // asks rustls for the process default, such as the WebSocket client, finds it set.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut runtime = if cli::needs_worker_threads(&cli) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match runtime.enable_all().build() {
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

/// SIGPIPE in a client. A closed stdout or stderr ends the process by the signal, as the
/// default disposition does. A connection the server closed must not: a write to it (TLS
/// writes with writev, which raises SIGPIPE) fails with EPIPE instead, and the client reports
/// that like any other network error. A pipe whose reader is gone polls as POLLERR.
extern "C" fn on_sigpipe(_: std::ffi::c_int) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::signal::{SigHandler, Signal, raise, signal};
    use std::os::fd::BorrowedFd;
    // SAFETY: descriptors 1 and 2 are only polled, never closed here.
    let (stdout, stderr) = unsafe { (BorrowedFd::borrow_raw(1), BorrowedFd::borrow_raw(2)) };
    let mut outputs = [
        PollFd::new(stdout, PollFlags::empty()),
        PollFd::new(stderr, PollFlags::empty()),
    ];
    let output_closed = poll(&mut outputs, PollTimeout::ZERO).is_ok_and(|ready| ready > 0)
        && outputs.iter().any(|output| {
            output
                .revents()
                .is_some_and(|events| events.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
        });
    if output_closed {
        // SAFETY: restoring the default disposition; the signal raised again is delivered
        // when this handler returns, and ends the process.
        unsafe {
            let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
        }
        let _ = raise(Signal::SIGPIPE);
    }
}

/// glibc gives a thread's freed heap back to the kernel as soon as 128 KiB lie free at its
/// top. The store's writer thread frees about that much after every commit (SQLite's savepoint
/// journal), so the server paid an madvise and the page faults to refill it on every event it
/// wrote: 10-20% of its CPU in chatbench. Freed memory below 4 MiB per heap now stays for the
/// next commit; the server's idle resident size is unchanged.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    const TRIM_THRESHOLD: std::ffi::c_int = 4 << 20;
    // SAFETY: mallopt only sets a tunable of the allocator, under the allocator's own lock.
    // A refusal leaves glibc's default, which is correct, only slower.
    let _ = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}
