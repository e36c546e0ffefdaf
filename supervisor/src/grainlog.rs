//! The grain log: the app's stdout and stderr plus the supervisor's lifecycle events, in a
//! size-bounded pair of files (`log`, `log.1`) in the grain's log directory, with live watchers.
//! Everything here runs on the supervisor's RPC thread; see SPEC.md, "Supervisor lifecycle".

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::channel::mpsc;

/// Default bound of each of the two files.
pub const DEFAULT_MAX_BYTES: u64 = 512 << 10;
/// Chunks a watcher may have queued before further output is skipped for it.
const WATCH_QUEUE: usize = 16;

/// One live reader of the log (a `watchLog` call).
struct Watcher {
    id: u64,
    tx: mpsc::Sender<Vec<u8>>,
    /// Bytes dropped because the queue was full, not yet announced to the reader.
    skipped: u64,
}

/// The log files and their watchers.
pub struct GrainLog {
    dir: PathBuf,
    max: u64,
    file: File,
    len: u64,
    watchers: Vec<Watcher>,
    next_id: u64,
    /// Set when a write failed; reported on the supervisor's stderr once per failure streak.
    failing: Cell<bool>,
}

/// Receiving side of [`GrainLog::watch`].
pub type WatchReceiver = mpsc::Receiver<Vec<u8>>;

impl GrainLog {
    /// Open (creating the directory and `log` if needed) for appending; each file holds at most
    /// `max_bytes` (at least 1).
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<GrainLog> {
        std::fs::create_dir_all(dir)?;
        let file = OpenOptions::new().create(true).append(true).open(dir.join("log"))?;
        let len = file.metadata()?.len();
        Ok(GrainLog { dir: dir.to_path_buf(), max: max_bytes.max(1), file, len, watchers: Vec::new(), next_id: 0, failing: Cell::new(false) })
    }

    /// Append output, rotating `log` to `log.1` whenever it would exceed the bound, and pass it
    /// to every watcher. A failing disk is reported on stderr, never to the app.
    pub fn write(&mut self, mut data: &[u8]) {
        self.broadcast(data);
        while !data.is_empty() {
            if self.len >= self.max {
                if let Err(e) = self.rotate() {
                    self.report(&e);
                    return;
                }
            }
            let n = data.len().min((self.max - self.len) as usize);
            match self.file.write_all(&data[..n]) {
                Ok(()) => self.failing.set(false),
                Err(e) => {
                    self.report(&e);
                    return;
                }
            }
            self.len += n as u64;
            data = &data[n..];
        }
    }

    /// Append one lifecycle event line: `[granary <UTC time>] <msg>`.
    pub fn event(&mut self, msg: &str) {
        let line = format!("[granary {}] {msg}\n", utc_now());
        self.write(line.as_bytes());
    }

    fn report(&self, e: &io::Error) {
        if !self.failing.replace(true) {
            eprintln!("granary supervisor: cannot write the grain log in {}: {e}; free disk space or fix its permissions", self.dir.display());
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        std::fs::rename(self.dir.join("log"), self.dir.join("log.1"))?;
        self.file = OpenOptions::new().create(true).truncate(true).write(true).open(self.dir.join("log"))?;
        self.len = 0;
        Ok(())
    }

    /// The last `max` bytes of `log.1` followed by `log`.
    pub fn backlog(&self, max: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let from_current = max.min(self.len);
        if max > from_current {
            match File::open(self.dir.join("log.1")) {
                Ok(f) => tail(f, max - from_current, &mut out)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        tail(File::open(self.dir.join("log"))?, from_current, &mut out)?;
        Ok(out)
    }

    /// Start receiving everything written from now on. Returns an id for [`GrainLog::unwatch`].
    pub fn watch(&mut self) -> (u64, WatchReceiver) {
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        self.next_id += 1;
        self.watchers.push(Watcher { id: self.next_id, tx, skipped: 0 });
        (self.next_id, rx)
    }

    /// Stop a watcher: its receiver ends after the chunks already queued.
    pub fn unwatch(&mut self, id: u64) {
        self.watchers.retain(|w| w.id != id);
    }

    fn broadcast(&mut self, data: &[u8]) {
        self.watchers.retain_mut(|w| {
            if w.skipped > 0 {
                let note = format!("[granary: {} bytes of log skipped: reader too slow]\n", w.skipped);
                match w.tx.try_send(note.into_bytes()) {
                    Ok(()) => w.skipped = 0,
                    Err(e) if e.is_full() => {
                        w.skipped += data.len() as u64;
                        return true;
                    }
                    Err(_) => return false,
                }
            }
            match w.tx.try_send(data.to_vec()) {
                Ok(()) => true,
                Err(e) if e.is_full() => {
                    w.skipped += data.len() as u64;
                    true
                }
                Err(_) => false,
            }
        });
    }
}

/// Append the last `n` bytes of `f` to `out`.
fn tail(mut f: File, n: u64, out: &mut Vec<u8>) -> io::Result<()> {
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(n)))?;
    f.take(n).read_to_end(out)?;
    Ok(())
}

/// Shared handle to the log on the RPC thread.
pub type SharedLog = Rc<std::cell::RefCell<GrainLog>>;

fn utc_now() -> String {
    utc(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (proleptic Gregorian calendar).
fn utc(secs: u64) -> String {
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn size(dir: &Path, name: &str) -> u64 {
        std::fs::metadata(dir.join(name)).map_or(0, |m| m.len())
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_795_003_661), "2026-11-18T12:07:41Z");
    }

    #[test]
    fn rotation_keeps_two_bounded_files_and_the_newest_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = GrainLog::open(dir.path(), 1000).unwrap();
        for i in 0..50u8 {
            log.write(&[b'a' + (i % 26); 77]);
        }
        assert_eq!(size(dir.path(), "log.1"), 1000);
        assert_eq!(size(dir.path(), "log"), (50 * 77) % 1000);
        assert!(!dir.path().join("log.2").exists());
        // The backlog is the tail of everything written, across the rotation boundary.
        let all: Vec<u8> = (0..50u8).flat_map(|i| [b'a' + (i % 26); 77]).collect();
        assert_eq!(log.backlog(1200).unwrap(), all[all.len() - 1200..]);
        assert_eq!(log.backlog(10).unwrap(), all[all.len() - 10..]);
        assert_eq!(log.backlog(1 << 20).unwrap().len() as u64, 1000 + size(dir.path(), "log"));
        // Reopening continues the same file.
        drop(log);
        let mut log = GrainLog::open(dir.path(), 1000).unwrap();
        log.write(b"x");
        assert_eq!(*log.backlog(1).unwrap(), *b"x");
    }

    #[test]
    fn events_are_timestamped_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = GrainLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        log.event("app started (pid 7)");
        let text = String::from_utf8(log.backlog(1000).unwrap()).unwrap();
        assert!(text.starts_with("[granary 20") && text.ends_with("Z] app started (pid 7)\n"), "{text}");
    }

    #[test]
    fn a_slow_watcher_gets_a_skip_note_and_a_dropped_one_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = GrainLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        let (_id, mut rx) = log.watch();
        let (gone, gone_rx) = log.watch();
        drop(gone_rx);
        for _ in 0..WATCH_QUEUE + 5 {
            log.write(b"0123456789");
        }
        assert_eq!(log.watchers.len(), 1, "a watcher whose receiver is gone is dropped");
        let mut got = Vec::new();
        while let Ok(c) = rx.try_recv() {
            got.push(c);
        }
        assert!(got.len() >= WATCH_QUEUE && got.len() < WATCH_QUEUE + 5, "{}", got.len());
        let dropped = (WATCH_QUEUE + 5 - got.len()) * 10;
        log.write(b"after");
        let note = futures::executor::block_on(rx.next()).unwrap();
        assert_eq!(String::from_utf8(note).unwrap(), format!("[granary: {dropped} bytes of log skipped: reader too slow]\n"));
        assert_eq!(futures::executor::block_on(rx.next()).unwrap(), b"after");
        log.unwatch(gone);
        log.unwatch(_id);
        assert!(log.watchers.is_empty());
        assert_eq!(futures::executor::block_on(rx.next()), None, "unwatch ends the stream");
    }
}
