//! How a client on this machine finds a server's Unix socket knowing only its URL: the server
//! links its socket, under the address it listens on, in a directory of the user's own
//! (`$XDG_RUNTIME_DIR/victor`, else `victor-UID` in the temporary directory).
//!
//! Only a server without keys announces its socket: there the socket and loopback TCP both
//! serve the machine's user with every right, so a client that takes the socket instead of
//! the URL changes nothing but the cost. A server with keys announces none, since its socket
//! skips the keys (and their scopes) that a client going by the URL is held to.
//!
//! What a client follows must come from this user: the directory is this user's alone (not a
//! link, mode 0700), the link and the socket it names are this user's too. Another local
//! user can neither put a link there nor make one point at a socket of theirs.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A server's link to its socket, removed when the server stops.
pub(super) struct Announcement {
    link: PathBuf,
    socket: PathBuf,
}

impl Announcement {
    /// Links `socket` as the way to the server listening on `address`. Whatever an earlier
    /// server on that address left there goes first, even when there is nothing to announce:
    /// the address is this server's now, and a client must not follow an old link to a socket
    /// nobody serves.
    pub(super) fn publish(address: SocketAddr, socket: Option<&Path>) -> Option<Announcement> {
        let directory = directory();
        if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(&directory)
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            tracing::debug!(directory = %directory.display(), error = %e, "cannot announce the Unix socket");
            return None;
        }
        if !is_private(&directory) {
            tracing::warn!(
                directory = %directory.display(),
                "not announcing the Unix socket: the directory is not this user's alone \
                 (clients find the socket through --data-dir)"
            );
            return None;
        }
        forget_gone(&directory);
        for reaching in reached_at(address) {
            let _ = std::fs::remove_file(directory.join(link_name(reaching)));
        }
        let socket = socket?;
        let link = directory.join(link_name(address));
        // A new link under a temporary name, then renamed over the old: a client sees one or
        // the other, never none.
        let fresh = directory.join(format!(".{}.{}", link_name(address), std::process::id()));
        let _ = std::fs::remove_file(&fresh);
        let linked = std::os::unix::fs::symlink(socket, &fresh)
            .and_then(|()| std::fs::rename(&fresh, &link));
        if let Err(e) = linked {
            let _ = std::fs::remove_file(&fresh);
            tracing::debug!(link = %link.display(), error = %e, "cannot announce the Unix socket");
            return None;
        }
        Some(Announcement {
            link,
            socket: socket.to_path_buf(),
        })
    }
}

impl Drop for Announcement {
    /// Removes the link, unless a server on the same address has replaced it since.
    fn drop(&mut self) {
        if std::fs::read_link(&self.link).is_ok_and(|target| target == self.socket) {
            let _ = std::fs::remove_file(&self.link);
        }
    }
}

/// The socket the server on `address` announced, when the announcement and the socket are this
/// user's own (see the module's documentation) and a server answers on it; `None` sends the
/// client over TCP. A link a killed server left behind names a socket nobody accepts on: one
/// connect (microseconds on this machine) tells it apart, and the URL stays the truth.
pub fn announced_socket(address: SocketAddr) -> Option<PathBuf> {
    let directory = directory();
    if !is_private(&directory) {
        return None;
    }
    let link = directory.join(link_name(address));
    let me = nix::unistd::geteuid().as_raw();
    let announced = std::fs::symlink_metadata(&link).ok()?;
    if !announced.file_type().is_symlink() || announced.uid() != me {
        return None;
    }
    let socket = std::fs::read_link(&link).ok()?;
    let target = std::fs::metadata(&socket).ok()?;
    if !target.file_type().is_socket() || target.uid() != me {
        return None;
    }
    std::os::unix::net::UnixStream::connect(&socket).ok()?;
    Some(socket)
}

/// `$XDG_RUNTIME_DIR/victor` (private to the user and emptied at logout), else `victor-UID` in
/// the temporary directory.
fn directory() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(runtime) if runtime.is_absolute() => runtime.join("victor"),
        _ => std::env::temp_dir().join(format!("victor-{}", nix::unistd::geteuid())),
    }
}

/// The addresses a client reaches a server listening on `address` at: a server on every
/// address is also the one at loopback.
fn reached_at(address: SocketAddr) -> Vec<SocketAddr> {
    if address.ip().is_unspecified() {
        let port = address.port();
        vec![
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)),
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
        ]
    } else {
        vec![address]
    }
}

/// `127.0.0.1:8765`, `[::1]:8765`.
fn link_name(address: SocketAddr) -> String {
    address.to_string()
}

/// A directory (not a link to one) of this user's that no one else may enter.
fn is_private(directory: &Path) -> bool {
    std::fs::symlink_metadata(directory).is_ok_and(|meta| {
        meta.is_dir() && meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o077 == 0
    })
}

/// Removes links whose socket is gone (servers killed before they could remove theirs, their
/// data dir deleted since), so that the directory does not grow with every server ever run.
fn forget_gone(directory: &Path) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_link = entry.file_type().is_ok_and(|kind| kind.is_symlink());
        if is_link
            && std::fs::metadata(&path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        {
            let _ = std::fs::remove_file(&path);
        }
    }
}
