//! A bounded pool of warm renderer processes, shared by the PlantUML pipes and victor's own
//! render workers: a process is costly to start (a JVM takes seconds, a render worker a few
//! milliseconds plus its renderers' set-up), so one is kept between diagrams, and each one
//! also costs memory, so the pool never holds more than its size, whatever its callers do.
//!
//! How: a process is only ever held with one of `size` checkout permits, and a new one is
//! started only by a holder that found none idle. Every living process is idle or held, and
//! each holder holds at most one, so the starter finds at most `size - 1` others alive. An
//! [`Alive`] count, taken before a process starts and given back when it is dropped, makes the
//! bound hold even if the permits were misused.

use std::ffi::OsString;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::process::{GroupGuard, Piped, StderrTail, WorkDir, minimal_env, spawn_piped};

use super::RenderError;
use crate::proto::DiagramType;

/// Processes of type `W`, idle or checked out. Dropping a `W` must stop its process.
pub struct Pool<W> {
    size: usize,
    checkouts: Semaphore,
    /// The idle processes; `None` once the pool is closed, so that nothing is put back after.
    idle: Mutex<Option<Vec<W>>>,
    /// Processes alive (idle, held or starting); each one's [`Alive`] counts it down.
    live: Arc<AtomicUsize>,
}

/// Why no process could be checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// Every permit stayed taken for the whole wait.
    #[error("no renderer became free in time")]
    TimedOut,
    /// The pool was closed (the server is stopping).
    #[error("the renderer is shutting down")]
    Closed,
}

impl Unavailable {
    /// The render's error: a wait past the limit is its timeout like any other.
    pub fn into_error(self, diagram_type: DiagramType, limit: Duration) -> RenderError {
        match self {
            Unavailable::TimedOut => RenderError::Timeout {
                diagram_type,
                limit,
            },
            Unavailable::Closed => RenderError::Invalid(self.to_string()),
        }
    }
}

impl<W> Pool<W> {
    pub fn new(size: usize) -> Pool<W> {
        let size = size.max(1);
        Pool {
            size,
            checkouts: Semaphore::new(size),
            idle: Mutex::new(Some(Vec::new())),
            live: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Processes alive now: idle, held, or starting.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Waits at most `timeout` for the right to use one process.
    pub async fn checkout(&self, timeout: Duration) -> Result<Checkout<'_, W>, Unavailable> {
        let permit = tokio::time::timeout(timeout, self.checkouts.acquire())
            .await
            .map_err(|_| Unavailable::TimedOut)?
            .map_err(|_| Unavailable::Closed)?;
        Ok(Checkout {
            pool: self,
            _permit: permit,
        })
    }

    /// Every permit at once, for filling the pool: while they are held, every living process
    /// is idle and no render starts one of its own. `None` once the pool is closed.
    pub async fn checkout_all(&self) -> Option<SemaphorePermit<'_>> {
        self.checkouts.acquire_many(self.size as u32).await.ok()
    }

    /// A place among at most `size` living processes, taken before starting one; `what`
    /// names them in the error.
    pub fn reserve(&self, what: &str) -> std::io::Result<Alive> {
        self.live
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.size).then_some(n + 1)
            })
            .map_err(|_| {
                std::io::Error::other(format!(
                    "{} {what} are running already, the most this server keeps",
                    self.size
                ))
            })?;
        Ok(Alive(self.live.clone()))
    }

    /// Starts a process for the pool, if there is room for one: `program` with `args` and
    /// the minimal environment plus `env`, in a working directory of its own.
    pub fn start(
        &self,
        what: &str,
        program: &Path,
        args: &[OsString],
        env: Vec<(OsString, OsString)>,
    ) -> std::io::Result<Resident> {
        let alive = self.reserve(what)?;
        let dir = WorkDir::new()?;
        let mut full_env = minimal_env(dir.path());
        full_env.extend(env);
        let Piped {
            child,
            group,
            stdin,
            stdout,
            stderr,
        } = spawn_piped(program, args, full_env, &dir)?;
        Ok(Resident {
            _alive: alive,
            child,
            _group: group,
            stdin,
            stdout,
            errors: StderrTail::start(stderr),
            _dir: dir,
        })
    }

    /// Keeps a process for the next diagram; once the pool is closed it is dropped instead.
    pub fn put_back(&self, process: W) {
        if let Ok(mut idle) = self.idle.lock()
            && let Some(idle) = idle.as_mut()
        {
            idle.push(process);
        }
    }

    /// Stops every idle process and refuses new checkouts; a process still held is dropped
    /// when its render ends, since it can no longer be put back.
    pub fn close(&self) {
        self.checkouts.close();
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.take());
        drop(idle);
    }
}

/// The right to use one process of the pool, until dropped.
pub struct Checkout<'a, W> {
    pool: &'a Pool<W>,
    _permit: SemaphorePermit<'a>,
}

impl<W> Checkout<'_, W> {
    /// An idle process, if there is one.
    pub fn idle(&self) -> Option<W> {
        self.pool.idle.lock().ok()?.as_mut()?.pop()
    }

    /// Gives the process back before the permit goes, so the next holder finds it idle.
    pub fn put_back(self, process: W) {
        self.pool.put_back(process);
    }
}

/// A process of a pool, with its pipes. Dropping it kills its process group and counts it
/// out of the living.
pub struct Resident {
    _alive: Alive,
    pub child: Child,
    _group: GroupGuard,
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
    /// The start of its stderr, for error messages.
    pub errors: StderrTail,
    _dir: WorkDir,
}

/// Counts a process among the living from before its start to its drop.
pub struct Alive(Arc<AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        _alive: Alive,
    }

    #[tokio::test]
    async fn never_more_alive_than_the_size_and_nothing_kept_once_closed() {
        let pool: Pool<Fake> = Pool::new(2);
        let most = AtomicUsize::new(0);
        let use_one = || async {
            let held = pool.checkout(Duration::from_secs(5)).await.unwrap();
            let process = match held.idle() {
                Some(process) => process,
                None => Fake {
                    _alive: pool.reserve("fakes").expect("a place for a new process"),
                },
            };
            most.fetch_max(pool.live(), Ordering::SeqCst);
            tokio::task::yield_now().await;
            held.put_back(process);
        };
        futures_util::future::join_all((0..16).map(|_| use_one())).await;
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(pool.live(), 2);
        // Past the size, no place is given, permits or not.
        let (a, b) = (pool.reserve("fakes"), pool.reserve("fakes"));
        assert!(a.is_err() && b.is_err());
        pool.close();
        assert_eq!(pool.live(), 0);
        assert_eq!(
            pool.checkout(Duration::from_secs(1)).await.err(),
            Some(Unavailable::Closed)
        );
        let late = Fake {
            _alive: pool.reserve("fakes").unwrap(),
        };
        pool.put_back(late);
        assert_eq!(pool.live(), 0, "a process put back after closing lives on");
    }
}
