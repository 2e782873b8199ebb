//! `victor remote`: servers kept under a name, with their key and the fingerprint of their
//! certificate, so that `--server NAME` reaches a server on another machine safely. Like SSH's
//! known_hosts, a remote whose certificate ever changes is refused until the user trusts the
//! new one.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use owo_colors::OwoColorize;
use serde::{Deserialize, Serialize};

use super::config;
use super::output::{Exit, Table, cell, styled};
use crate::client::{Client, ClientError, presented_fingerprint};
use crate::proto::Fingerprint;

#[derive(Debug, Args)]
pub struct RemoteArgs {
    #[command(subcommand)]
    command: RemoteCommand,
}

#[derive(Debug, Subcommand)]
enum RemoteCommand {
    /// Keep a server under a name (then `--server NAME` reaches it) after checking it answers.
    ///
    /// For an https URL without --fingerprint, shows the certificate the server presents and
    /// asks whether to trust it (trust on first use). Adding a name again replaces it; with the
    /// same URL and no --key, it keeps its key.
    Add {
        /// Letters, digits, `-` and `_`.
        #[arg(value_parser = parse_name)]
        name: String,
        /// The server's URL: https://192.168.1.20:8765.
        url: String,
        /// The server's API key (stored in remotes.toml, readable by you only).
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
        /// The fingerprint `victor serve --tls` printed: trust exactly that certificate.
        #[arg(long, value_name = "SHA256")]
        fingerprint: Option<Fingerprint>,
        /// Trust the certificate the server presents without asking.
        #[arg(short, long)]
        yes: bool,
    },
    /// List the remotes (keys are never shown, only whether one is set).
    List {
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Forget a remote.
    Remove {
        #[arg(value_parser = parse_name)]
        name: String,
    },
}

/// One stored server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Remote {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    api_key: Option<String>,
    /// The only certificate the server may present (https only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fingerprint: Option<Fingerprint>,
}

/// `remotes.toml`: `[remotes.NAME]` tables.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemotesFile {
    #[serde(default)]
    remotes: BTreeMap<String, Remote>,
}

fn parse_name(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(name.to_string())
    } else {
        Err(format!(
            "`{name}` is not a remote name: use letters, digits, `-` and `_`"
        ))
    }
}

/// `remotes.toml` beside the settings file: the directory of `--config` when given, else the
/// platform's config dir.
fn remotes_path(config_file: Option<&Path>) -> anyhow::Result<PathBuf> {
    let settings = config_file
        .map(Path::to_path_buf)
        .or_else(config::default_config_path)
        .context("no config directory to keep remotes in (set --config or VICTOR_CONFIG)")?;
    let dir = match settings.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(dir.join("remotes.toml"))
}

impl RemotesFile {
    fn load(path: &Path) -> anyhow::Result<RemotesFile> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))
    }

    /// Writes the file readable by this user only (it holds keys), through a temporary file
    /// and a rename so that a crash never leaves it half written.
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let failed = || format!("cannot write {}", path.display());
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(failed)?;
        }
        let text = toml::to_string(self).with_context(failed)?;
        let temporary = path.with_extension("toml.tmp");
        let _ = std::fs::remove_file(&temporary);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(failed)?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&temporary, path))
            .with_context(failed)
    }

    /// The names, for messages about a name that is not among them.
    fn known(&self) -> String {
        if self.remotes.is_empty() {
            "there are no remotes yet".to_string()
        } else {
            let names: Vec<&str> = self.remotes.keys().map(String::as_str).collect();
            format!("known remotes: {}", names.join(", "))
        }
    }
}

/// The server a client command talks to, from `--server` (a URL or a remote's name).
pub struct Target {
    url: String,
    api_key: Option<String>,
    fingerprint: Option<Fingerprint>,
    /// The remote's name, when `--server` named one.
    remote: Option<String>,
}

impl Target {
    /// `server` is a URL (with `://`) or a remote's name. A remote brings its URL, its key
    /// (unless `flag_key`, from --api-key, overrides it) and its fingerprint;
    /// the key in config.toml (`settings_key`) goes only to servers given by URL, never to
    /// a remote, which may be another machine.
    pub fn resolve(
        server: &str,
        flag_key: Option<String>,
        settings_key: Option<String>,
        config_file: Option<&Path>,
    ) -> anyhow::Result<Target> {
        if server.contains("://") {
            return Ok(Target {
                url: server.to_string(),
                api_key: settings_key,
                fingerprint: None,
                remote: None,
            });
        }
        let path = remotes_path(config_file)?;
        let remotes = RemotesFile::load(&path)?;
        let Some(remote) = remotes.remotes.get(server) else {
            bail!(
                "`{server}` is neither a server URL (like https://host:8765) nor a remote's name; \
                 {} (add one with `victor remote add {server} URL`)",
                remotes.known()
            );
        };
        Ok(Target {
            url: remote.url.clone(),
            api_key: flag_key.or_else(|| remote.api_key.clone()),
            fingerprint: remote.fingerprint,
            remote: Some(server.to_string()),
        })
    }

    /// A client for the target: pinned to its fingerprint, or else through the Unix socket of a
    /// loopback URL's server (announced, or in `data_dir`) when it has one.
    pub fn client(&self, data_dir: &Path) -> Result<Client, ClientError> {
        match self.fingerprint {
            Some(fingerprint) => Client::pinned(&self.url, self.api_key.clone(), fingerprint),
            None => Client::local(&self.url, self.api_key.clone(), data_dir),
        }
    }

    /// The server as the person named it: `lab (https://192.168.1.20:8765)`, or the URL.
    pub fn label(&self) -> String {
        match &self.remote {
            Some(name) => format!("{name} ({})", self.url),
            None => self.url.clone(),
        }
    }

    /// How `error` reads to the user of this target: a changed certificate names the remote
    /// in the command that trusts the new one.
    pub fn explain(&self, error: &ClientError) -> String {
        match (error, &self.remote) {
            (ClientError::FingerprintMismatch { .. }, Some(name)) => error.to_string().replace(
                "victor remote add NAME ",
                &format!("victor remote add {name} "),
            ),
            _ => error.to_string(),
        }
    }
}

pub async fn run(args: RemoteArgs, config_file: Option<&Path>) -> anyhow::Result<Exit> {
    let path = remotes_path(config_file)?;
    match args.command {
        RemoteCommand::Add {
            name,
            url,
            key,
            fingerprint,
            yes,
        } => add(&path, &name, &url, key, fingerprint, yes).await,
        RemoteCommand::List { json } => list(&path, json),
        RemoteCommand::Remove { name } => {
            let mut remotes = RemotesFile::load(&path)?;
            if remotes.remotes.remove(&name).is_none() {
                bail!("there is no remote named `{name}`; {}", remotes.known());
            }
            remotes.save(&path)?;
            println!("removed remote {name}");
            Ok(Exit::Success)
        }
    }
}

async fn add(
    path: &Path,
    name: &str,
    url: &str,
    key: Option<String>,
    fingerprint: Option<Fingerprint>,
    yes: bool,
) -> anyhow::Result<Exit> {
    let url = url.trim_end_matches('/');
    // Validates the URL before anything touches the network.
    Client::new(url, None)?;
    let https = url.starts_with("https://");
    let mut remotes = RemotesFile::load(path)?;
    // The stored key stays with the same server, never goes to a new URL.
    let api_key = key.filter(|key| !key.is_empty()).or_else(|| {
        remotes
            .remotes
            .get(name)
            .filter(|stored| stored.url == url)?
            .api_key
            .clone()
    });
    let explicit = fingerprint.is_some();
    let fingerprint = match (https, fingerprint) {
        (false, Some(_)) => {
            bail!("--fingerprint pins a TLS certificate, so it needs an https:// URL, not {url}")
        }
        (false, None) => None,
        (true, Some(fingerprint)) => Some(fingerprint),
        (true, None) => Some(trust_on_first_use(url, yes).await?),
    };
    // Checked before saving: a typo in the URL or the key never leaves a remote that fails
    // later, and with a pin the server proves it holds the certificate's private key.
    let client = match fingerprint {
        Some(fingerprint) => Client::pinned(url, api_key.clone(), fingerprint)?,
        None => Client::new(url, api_key.clone())?,
    };
    match client.status().await {
        Ok(status) => anstream::eprintln!("victor {} answers at {url}", status.version),
        Err(ClientError::Unreachable { .. }) if explicit => anstream::eprintln!(
            "{} cannot reach {url} now; saving the remote anyway",
            "warning:".yellow().bold()
        ),
        Err(ClientError::FingerprintMismatch {
            expected,
            presented,
            ..
        }) => bail!(
            "the server at {url} presents the certificate {presented}, not {expected} as given \
             with --fingerprint; check the fingerprint with the server's owner. Remote {name} \
             not saved"
        ),
        Err(error) => {
            let hint = match &error {
                ClientError::Api { status: 401, .. } => " (give its API key with --key)",
                _ => "",
            };
            bail!("{error}{hint}; remote {name} not saved");
        }
    }
    let replaced = remotes
        .remotes
        .insert(
            name.to_string(),
            Remote {
                url: url.to_string(),
                api_key,
                fingerprint,
            },
        )
        .is_some();
    remotes.save(path)?;
    println!(
        "{} remote {name}: use it with --server {name} (or VICTOR_SERVER={name})",
        if replaced { "updated" } else { "added" }
    );
    Ok(Exit::Success)
}

/// Shows the certificate the server presents and asks whether to trust it, like SSH does for
/// a host it has not seen. Without a terminal to ask on, only `--yes` trusts it.
async fn trust_on_first_use(url: &str, yes: bool) -> anyhow::Result<Fingerprint> {
    let presented = presented_fingerprint(url).await?;
    anstream::eprintln!(
        "The server at {url} presents a TLS certificate with the fingerprint\n  {presented}\n\
         Check that it is the one `victor serve --tls` printed on that machine."
    );
    if yes {
        return Ok(presented);
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "cannot ask whether to trust it without a terminal: once its owner has confirmed it, \
             pass --fingerprint {presented} (or --yes to trust whatever the server presents)"
        );
    }
    anstream::eprint!("Trust this certificate? [y/N] ");
    let _ = std::io::stderr().flush();
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .context("cannot read the answer")?
    .context("cannot read the answer")?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(presented)
    } else {
        bail!("certificate not trusted; nothing saved")
    }
}

/// What `remote list --json` prints for a remote: never its key.
#[derive(Serialize)]
struct ListedRemote<'a> {
    name: &'a str,
    url: &'a str,
    api_key_set: bool,
    fingerprint: Option<Fingerprint>,
}

fn list(path: &Path, json: bool) -> anyhow::Result<Exit> {
    let remotes = RemotesFile::load(path)?;
    let listed: Vec<ListedRemote> = remotes
        .remotes
        .iter()
        .map(|(name, remote)| ListedRemote {
            name,
            url: &remote.url,
            api_key_set: remote.api_key.is_some(),
            fingerprint: remote.fingerprint,
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(Exit::Success);
    }
    if listed.is_empty() {
        anstream::eprintln!("no remotes (add one with `victor remote add NAME URL`)");
        return Ok(Exit::Success);
    }
    let mut table = Table::new(&["NAME", "URL", "KEY", "FINGERPRINT"]);
    for remote in &listed {
        let key = if remote.api_key_set { "set" } else { "none" };
        let fingerprint = remote
            .fingerprint
            .map_or_else(|| "-".to_string(), |f| f.to_string());
        table.row(vec![
            cell(remote.name),
            cell(remote.url),
            styled(key, key.dimmed().to_string()),
            cell(fingerprint),
        ]);
    }
    anstream::print!("{}", table.render());
    Ok(Exit::Success)
}
