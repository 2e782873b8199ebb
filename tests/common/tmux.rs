//! Terminal programs under test: tmux runs them on a pseudo-terminal of a fixed size, tests type
//! with `send-keys` and read the screen back with `capture-pane`.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{Server, VICTOR};

/// A tmux server of its own (its own socket), with one session running a command in a
/// terminal of a fixed size. Killed when dropped, whatever the test did.
pub struct Tmux {
    socket: String,
    /// Where the shell running the command writes its exit status. tmux's own
    /// `pane_dead_status` is not used: on a busy machine a tmux server was seen to leave its
    /// pane's process a zombie for good, the pane dead and its status never known.
    status: tempfile::TempDir,
}

impl Tmux {
    pub fn start(command: &str, width: u16, height: u16) -> Tmux {
        static SESSIONS: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "victor-watch-test-{}-{}",
            std::process::id(),
            SESSIONS.fetch_add(1, Ordering::Relaxed)
        );
        let tmux = Tmux {
            socket,
            status: tempfile::tempdir().expect("temp dir"),
        };
        let status_file = tmux.status.path().join("status");
        let command = format!(
            "{command}; echo $? > {}",
            quoted(&status_file.to_string_lossy())
        );
        let started = tmux
            .command()
            .args(["new-session", "-d", "-s", "watch"])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg(command)
            .status()
            .unwrap_or_else(|e| panic!("cannot run tmux ({e}): install it (apt-get install tmux)"));
        assert!(started.success(), "tmux did not start");
        // Keep the pane after the command ends, to read what it left on screen.
        tmux.run(&["set-option", "-t", "watch", "remain-on-exit", "on"]);
        tmux
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket, "-f", "/dev/null"]);
        command
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "watch"])
    }

    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "watch"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Waits until the screen satisfies `check`; panics with the screen after `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {what}; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pane(&self, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", "watch", format])
            .trim()
            .to_string()
    }

    /// Whether the program has the alternate screen and the mouse: a program that ends must
    /// give both back.
    pub fn holds_terminal(&self) -> bool {
        self.pane("#{alternate_on} #{mouse_any_flag}") != "0 0"
    }

    /// The pid of the command the pane's shell runs.
    pub fn command_pid(&self) -> i32 {
        let shell = self.pane("#{pane_pid}");
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            .expect("the pane's shell's children");
        children
            .split_whitespace()
            .next()
            .and_then(|pid| pid.parse().ok())
            .expect("the command runs under the pane's shell")
    }

    /// The exit status of the command (128 + N when signal N ended it), once it has ended.
    pub fn exit_status(&self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        let file = self.status.path().join("status");
        while Instant::now() < deadline {
            // Written in one go by the shell; a half-written file reads as no number yet.
            if let Ok(status) = std::fs::read_to_string(&file)
                && let Ok(code) = status.trim().parse()
            {
                return Some(code);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").status();
    }
}

/// Quotes a word for the shell tmux runs the command with.
pub fn quoted(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `victor ARGS` as tmux runs it: pointed at `server` with the test's config, without colour
/// and without the developer's key.
pub fn victor_command(server: &Server, args: &[&str]) -> String {
    let config = server.config_dir().join("config.toml");
    let mut words = vec![
        "env".to_string(),
        "-u".into(),
        "VICTOR_API_KEY".into(),
        "NO_COLOR=1".into(),
        format!("VICTOR_SERVER={}", quoted(&server.url)),
        format!("VICTOR_CONFIG={}", quoted(&config.to_string_lossy())),
        quoted(VICTOR),
    ];
    words.extend(args.iter().map(|arg| quoted(arg)));
    words.join(" ")
}
