//! Rendered SVGs by content address: the hash of everything that decides the output (type,
//! options, the backend that draws it, the source). Recent ones stay in memory; all of them go
//! to disk, so a restarted server still answers known diagrams without rendering them again.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// A content address: 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    /// Hashes the parts with a separator that cannot occur inside them, so that two different
    /// lists never share a key.
    pub fn of(parts: &[&[u8]]) -> CacheKey {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        CacheKey(
            hasher
                .finalize()
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect(),
        )
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The HTTP entity tag of the SVG stored under this key.
    pub fn etag(&self) -> String {
        format!("\"{}\"", &self.0[..32])
    }
}

/// Memory and disk together.
pub struct SvgCache {
    memory: Mutex<Memory>,
    dir: Option<PathBuf>,
}

struct Memory {
    entries: HashMap<CacheKey, Arc<str>>,
    /// Oldest first; a key may appear once only.
    order: VecDeque<CacheKey>,
    bytes: usize,
    max_bytes: usize,
}

impl SvgCache {
    /// A cache holding up to `max_memory_bytes` of SVG in memory, and everything in `dir`
    /// when one is given (created on first write).
    pub fn new(max_memory_bytes: usize, dir: Option<PathBuf>) -> SvgCache {
        SvgCache {
            memory: Mutex::new(Memory {
                entries: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
                max_bytes: max_memory_bytes,
            }),
            dir,
        }
    }

    /// From memory only: no file system access, so it can answer on the async threads.
    pub fn get_in_memory(&self, key: &CacheKey) -> Option<Arc<str>> {
        let memory = self.memory.lock().ok()?;
        memory.entries.get(key).cloned()
    }

    /// From disk, keeping it in memory afterwards. Blocking: call it off the async threads.
    pub fn get_from_disk(&self, key: &CacheKey) -> Option<Arc<str>> {
        let path = self.path_of(key)?;
        let svg: Arc<str> = std::fs::read_to_string(path).ok()?.into();
        self.remember(key, svg.clone());
        Some(svg)
    }

    /// Keeps an SVG on disk. Blocking: call it off the async threads. A disk that cannot take
    /// it only costs a render later.
    pub fn write_to_disk(&self, key: &CacheKey, svg: &str) {
        if let Some(path) = self.path_of(key)
            && let Err(e) = write_atomically(&path, svg.as_bytes())
        {
            tracing::debug!(error = %e, path = %path.display(), "could not keep a render on disk");
        }
    }

    /// Keeps an SVG in memory, dropping the oldest ones beyond the budget.
    pub fn remember(&self, key: &CacheKey, svg: Arc<str>) {
        let Ok(mut memory) = self.memory.lock() else {
            return;
        };
        if svg.len() > memory.max_bytes {
            return;
        }
        if let Some(old) = memory.entries.insert(key.clone(), svg.clone()) {
            memory.bytes -= old.len();
            memory.order.retain(|k| k != key);
        }
        memory.bytes += svg.len();
        memory.order.push_back(key.clone());
        while memory.bytes > memory.max_bytes {
            let Some(oldest) = memory.order.pop_front() else {
                break;
            };
            if let Some(gone) = memory.entries.remove(&oldest) {
                memory.bytes -= gone.len();
            }
        }
    }

    /// `DIR/ab/abcdef….svg`: two hex digits of fan-out keep directories small.
    fn path_of(&self, key: &CacheKey) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(
            dir.join(&key.as_str()[..2])
                .join(format!("{}.svg", key.as_str())),
        )
    }
}

/// Writes through a temporary file and a rename, so a reader never sees half an SVG.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    std::fs::create_dir_all(dir)?;
    let temporary = dir.join(format!(".{}.tmp", uuid::Uuid::now_v7()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_when_any_part_does() {
        let a = CacheKey::of(&[b"graphviz", b"a->b"]);
        assert_eq!(a, CacheKey::of(&[b"graphviz", b"a->b"]));
        assert_ne!(a, CacheKey::of(&[b"graphvi", b"za->b"]));
        assert_eq!(a.as_str().len(), 64);
        assert_eq!(a.etag().len(), 34);
    }

    #[test]
    fn memory_keeps_the_newest_within_its_budget_and_disk_keeps_all() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SvgCache::new(10, Some(dir.path().to_path_buf()));
        let first = CacheKey::of(&[b"1"]);
        let second = CacheKey::of(&[b"2"]);
        for (key, svg) in [(&first, "123456"), (&second, "abcdef")] {
            cache.remember(key, svg.into());
            cache.write_to_disk(key, svg);
        }
        assert!(cache.get_in_memory(&first).is_none());
        assert_eq!(cache.get_in_memory(&second).as_deref(), Some("abcdef"));
        assert_eq!(cache.get_from_disk(&first).as_deref(), Some("123456"));
        assert_eq!(cache.get_in_memory(&first).as_deref(), Some("123456"));
    }
}
