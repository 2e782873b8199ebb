//! A `victor serve` process for a benchmark: the release binary on 127.0.0.1, port 0, a fresh
//! temporary data directory and an empty config, no rate limit (the load comes from one
//! address, far faster than any person's), killed when dropped.

// Each benchmark uses its part of this file.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

pub struct Server {
    child: Child,
    /// The base URL it printed, `http://127.0.0.1:PORT`.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `binary` with `extra` arguments after the common ones, and waits until it listens.
    pub fn start(binary: &Path, extra: &[String]) -> Result<Server> {
        let dir = tempfile::Builder::new().prefix("victor-bench-").tempdir()?;
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "")?;
        let mut command = Command::new(binary);
        command
            .args([
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--rate-limit",
                "0",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(extra)
            .env("VICTOR_CONFIG", &config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Settings from our environment would make the run depend on who runs it.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("VICTOR_") && key != "VICTOR_CONFIG" {
                command.env_remove(key);
            }
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let url = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                bail!("the server ended before listening");
            };
            if let Some((_, rest)) = line.split_once("listening on ") {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
            }
        };
        // Keep reading, so that the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        if !url.starts_with("http://127.0.0.1:") {
            let _ = child.kill();
            bail!("the server listens on {url}, not on loopback");
        }
        Ok(Server {
            child,
            url,
            _dir: dir,
        })
    }
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server binary: `given`, else the `victor` the same build produced (examples live in
/// `<target>/release/examples/`), else `target/release/victor`.
pub fn server_binary(given: Option<&Path>) -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = match given {
        Some(path) => vec![path.to_path_buf()],
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join("victor")))
            .into_iter()
            .chain([PathBuf::from("target/release/victor")])
            .collect(),
    };
    match candidates.iter().find(|path| path.is_file()) {
        Some(found) => Ok(found.clone()),
        None => bail!(
            "no victor binary at {}: build it with `cargo build --release --bin victor` or pass \
             --server PATH",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    }
}
