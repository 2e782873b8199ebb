//! Rendered SVGs by content address: the hash of everything that decides the output (type,
//! options, the backend that draws it, the source). Recent ones stay in memory; all of them go
//! to disk, so a restarted server still answers known diagrams without rendering them again,
//! and the least recently used files go when the disk's share passes its budget.

use std::collections::{BTreeMap, HashMap, VecDeque};
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
    disk: Option<Disk>,
}

struct Memory {
    entries: HashMap<CacheKey, Arc<str>>,
    /// Oldest first; a key may appear once only.
    order: VecDeque<CacheKey>,
    bytes: usize,
    max_bytes: usize,
}

/// The files of the disk cache, within a byte budget.
struct Disk {
    dir: PathBuf,
    max_bytes: u64,
    /// What is in `dir`, read from it at the first disk access (blocking, so not in `new`).
    index: Mutex<Option<DiskIndex>>,
}

/// Each file's size and when it was last used, by a counter rather than the clock: the order
/// is all that eviction needs, and a counter never goes backwards.
#[derive(Default)]
struct DiskIndex {
    files: HashMap<CacheKey, DiskEntry>,
    /// Last use → key, least recently used first.
    by_use: BTreeMap<u64, CacheKey>,
    bytes: u64,
    clock: u64,
}

#[derive(Clone, Copy)]
struct DiskEntry {
    size: u64,
    used: u64,
}

impl DiskIndex {
    /// Indexes the SVGs in `dir`, in the order of their modification times (a disk hit
    /// refreshes the time, so the order of use survives a restart), and removes the
    /// temporary files of writes a crash interrupted.
    fn load(dir: &Path) -> DiskIndex {
        let mut found: Vec<(std::time::SystemTime, CacheKey, u64)> = Vec::new();
        let fans = std::fs::read_dir(dir).into_iter().flatten().flatten();
        for fan in fans.filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir())) {
            for file in std::fs::read_dir(fan.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = file.path();
                let name = file.file_name();
                let name = name.to_string_lossy();
                if name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                let Some(key) = name
                    .strip_suffix(".svg")
                    .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                else {
                    continue;
                };
                if let Ok(meta) = file.metadata() {
                    let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                    found.push((modified, CacheKey(key.to_string()), meta.len()));
                }
            }
        }
        found.sort_by_key(|(modified, _, _)| *modified);
        let mut index = DiskIndex::default();
        for (_, key, size) in found {
            index.insert(key, size);
        }
        index
    }

    /// Records a use of `key`, if it is on disk.
    fn touch(&mut self, key: &CacheKey) {
        self.clock += 1;
        if let Some(entry) = self.files.get_mut(key) {
            self.by_use.remove(&entry.used);
            entry.used = self.clock;
            self.by_use.insert(self.clock, key.clone());
        }
    }

    fn insert(&mut self, key: CacheKey, size: u64) {
        self.remove(&key);
        self.clock += 1;
        self.files.insert(
            key.clone(),
            DiskEntry {
                size,
                used: self.clock,
            },
        );
        self.by_use.insert(self.clock, key);
        self.bytes += size;
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some(entry) = self.files.remove(key) {
            self.by_use.remove(&entry.used);
            self.bytes -= entry.size;
        }
    }

    /// The least recently used key, taken out of the index.
    fn pop_oldest(&mut self) -> Option<CacheKey> {
        let (_, key) = self.by_use.pop_first()?;
        if let Some(entry) = self.files.remove(&key) {
            self.bytes -= entry.size;
        }
        Some(key)
    }
}

impl Disk {
    /// `DIR/ab/abcdef….svg`: two hex digits of fan-out keep directories small.
    fn path_of(&self, key: &CacheKey) -> PathBuf {
        self.dir
            .join(&key.as_str()[..2])
            .join(format!("{}.svg", key.as_str()))
    }

    /// Runs `f` on the index, loading it first if this is the first disk access. Blocking.
    fn with_index<T>(&self, f: impl FnOnce(&mut DiskIndex) -> T) -> Option<T> {
        let mut index = self.index.lock().ok()?;
        let index = index.get_or_insert_with(|| {
            let mut loaded = DiskIndex::load(&self.dir);
            self.evict(&mut loaded);
            loaded
        });
        Some(f(index))
    }

    /// Deletes least recently used files until the rest fit the budget.
    fn evict(&self, index: &mut DiskIndex) {
        while index.bytes > self.max_bytes {
            let Some(oldest) = index.pop_oldest() else {
                break;
            };
            let path = self.path_of(&oldest);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::debug!(error = %e, path = %path.display(), "could not evict a cached render");
            }
        }
    }
}

impl SvgCache {
    /// A cache holding up to `max_memory_bytes` of SVG in memory and, when a `dir` is given
    /// (created on first write), up to `max_disk_bytes` there.
    pub fn new(max_memory_bytes: usize, dir: Option<PathBuf>, max_disk_bytes: u64) -> SvgCache {
        SvgCache {
            memory: Mutex::new(Memory {
                entries: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
                max_bytes: max_memory_bytes,
            }),
            disk: dir.map(|dir| Disk {
                dir,
                max_bytes: max_disk_bytes,
                index: Mutex::new(None),
            }),
        }
    }

    /// From memory only: no file system access, so it can answer on the async threads.
    pub fn get_in_memory(&self, key: &CacheKey) -> Option<Arc<str>> {
        let svg = self.memory.lock().ok()?.entries.get(key).cloned()?;
        // A use keeps the file too: evicting a diagram served every second from memory would
        // cost a render after a restart. Never waits: a busy index (evicting) misses one use.
        if let Some(disk) = &self.disk
            && let Ok(mut index) = disk.index.try_lock()
            && let Some(index) = index.as_mut()
        {
            index.touch(key);
        }
        Some(svg)
    }

    /// From disk, keeping it in memory afterwards. Blocking: call it off the async threads.
    pub fn get_from_disk(&self, key: &CacheKey) -> Option<Arc<str>> {
        let disk = self.disk.as_ref()?;
        let path = disk.path_of(key);
        let Ok(svg) = std::fs::read_to_string(&path) else {
            disk.with_index(|index| index.remove(key));
            return None;
        };
        disk.with_index(|index| index.touch(key));
        // The time orders the files when the index is read again after a restart.
        if let Ok(file) = std::fs::File::options().append(true).open(&path) {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
        let svg: Arc<str> = svg.into();
        self.remember(key, svg.clone());
        Some(svg)
    }

    /// Keeps an SVG on disk, deleting the least recently used ones past the budget. Blocking:
    /// call it off the async threads. A disk that cannot take it only costs a render later.
    pub fn write_to_disk(&self, key: &CacheKey, svg: &str) {
        let Some(disk) = &self.disk else {
            return;
        };
        let size = svg.len() as u64;
        if size > disk.max_bytes {
            return;
        }
        let path = disk.path_of(key);
        if let Err(e) = write_atomically(&path, svg.as_bytes()) {
            tracing::debug!(error = %e, path = %path.display(), "could not keep a render on disk");
            return;
        }
        disk.with_index(|index| {
            index.insert(key.clone(), size);
            disk.evict(index);
        });
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
        let cache = SvgCache::new(10, Some(dir.path().to_path_buf()), 1024);
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

    fn on_disk(dir: &Path, key: &CacheKey) -> bool {
        dir.join(&key.as_str()[..2])
            .join(format!("{}.svg", key.as_str()))
            .is_file()
    }

    #[test]
    fn disk_keeps_the_most_recently_used_within_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SvgCache::new(0, Some(dir.path().to_path_buf()), 20);
        let [a, b, c] = [b"a", b"b", b"c"].map(|part| CacheKey::of(&[part]));
        cache.write_to_disk(&a, "aaaaaaaa");
        cache.write_to_disk(&b, "bbbbbbbb");
        // A read of `a` makes `b` the least recently used, so `c` pushes `b` out.
        assert_eq!(cache.get_from_disk(&a).as_deref(), Some("aaaaaaaa"));
        cache.write_to_disk(&c, "cccccccc");
        assert!(on_disk(dir.path(), &a) && on_disk(dir.path(), &c));
        assert!(!on_disk(dir.path(), &b));
        assert!(cache.get_from_disk(&b).is_none());
        // Larger than the whole budget: not kept, and nothing else is evicted for it.
        cache.write_to_disk(&b, &"x".repeat(21));
        assert!(!on_disk(dir.path(), &b) && on_disk(dir.path(), &a));
    }

    #[test]
    fn a_restart_reads_the_order_of_use_from_the_files_and_applies_a_smaller_budget() {
        let dir = tempfile::tempdir().unwrap();
        let [old, recent] = [b"old", b"new"].map(|part| CacheKey::of(&[part]));
        {
            let cache = SvgCache::new(0, Some(dir.path().to_path_buf()), 1024);
            cache.write_to_disk(&recent, "recently used");
            cache.write_to_disk(&old, "used long ago");
        }
        let aged = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let path = dir
            .path()
            .join(&old.as_str()[..2])
            .join(format!("{}.svg", old.as_str()));
        std::fs::File::options()
            .append(true)
            .open(&path)
            .unwrap()
            .set_modified(aged)
            .unwrap();
        let leftover = path.with_file_name(".interrupted.tmp");
        std::fs::write(&leftover, "half").unwrap();

        let cache = SvgCache::new(0, Some(dir.path().to_path_buf()), 15);
        assert_eq!(
            cache.get_from_disk(&recent).as_deref(),
            Some("recently used")
        );
        assert!(!on_disk(dir.path(), &old));
        assert!(!leftover.exists());
    }
}
