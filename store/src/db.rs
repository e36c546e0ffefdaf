//! The typed handle: [`Db`] for reads, single writes and transactions; [`Tx`] inside them.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::{Mutex, MutexGuard};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::engine::{RawEntry, RawIter, Store, Writes};
use crate::error::show_bytes;
use crate::key::{prefix_end, Key, KeyArg, PrefixOf, Table};
use crate::Error;

/// An open database: an engine, the writer lock, and the schema version it was opened at.
pub struct Db {
    pub(crate) store: Box<dyn Store>,
    writer: Mutex<()>,
    pub(crate) version: u32,
    /// Committed write transactions since the database was opened (see [`Db::write_count`]).
    commits: std::sync::atomic::AtomicU64,
}

thread_local! {
    /// The databases this thread is inside a transaction of, to refuse a deadlocking nest.
    static ACTIVE: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Holds the writer lock and marks this thread as inside a transaction of one `Db`.
struct WriterGuard<'a> {
    _lock: MutexGuard<'a, ()>,
    id: usize,
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.borrow_mut().retain(|&x| x != self.id));
    }
}

impl Db {
    pub(crate) fn from_store(store: Box<dyn Store>) -> Db {
        Db {
            store,
            writer: Mutex::new(()),
            version: 0,
            commits: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The schema version the database is at (the latest the code knows, once opened).
    pub fn schema_version(&self) -> u32 {
        self.version
    }

    fn enter(&self) -> Result<WriterGuard<'_>, Error> {
        let id = self as *const Db as usize;
        if ACTIVE.with(|a| a.borrow().contains(&id)) {
            return Err(Error::NestedTransaction);
        }
        // A panic inside an earlier transaction poisons the lock but wrote nothing, so the
        // lock is still good to use.
        let lock = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        ACTIVE.with(|a| a.borrow_mut().push(id));
        Ok(WriterGuard { _lock: lock, id })
    }

    /// Run `f` as one transaction over any number of tables. Transactions run one at a time,
    /// so reads inside see a consistent state. If `f` returns `Err` nothing is written. If it
    /// returns `Ok` and wrote something, the writes are committed atomically and flushed:
    /// when `transaction` returns `Ok`, the writes survive `kill -9` and power loss.
    pub fn transaction<R, E: From<Error>>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let _guard = self.enter()?;
        let mut tx = Tx {
            store: &*self.store,
            writes: Writes::new(),
        };
        let out = f(&mut tx)?;
        if !tx.writes.is_empty() {
            self.store.commit(&tx.writes)?;
            // Counted before the flush: a reader comparing counts never misses a write.
            self.commits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.store.flush()?;
        }
        Ok(out)
    }

    /// How many write transactions were committed through this handle since it was opened. A
    /// caller that computed something from the database can reuse it for as long as this
    /// number is unchanged (nothing was written in between).
    pub fn write_count(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The value under `key`, or `None`.
    pub fn get<K: Key, V: DeserializeOwned, Q: KeyArg<K> + ?Sized>(
        &self,
        table: &Table<K, V>,
        key: &Q,
    ) -> Result<Option<V>, Error> {
        let key = encode_arg(key);
        let raw = self.store.get(table.name(), &key)?;
        raw.map(|v| decode_value(table, &key, &v)).transpose()
    }

    /// Insert or replace one value, as its own committed and flushed transaction.
    pub fn insert<K: Key, V: Serialize, Q: KeyArg<K> + ?Sized>(
        &self,
        table: &Table<K, V>,
        key: &Q,
        value: &V,
    ) -> Result<(), Error> {
        self.transaction(|tx| tx.insert(table, key, value))
    }

    /// Remove one key (absent is fine), as its own committed and flushed transaction.
    pub fn remove<K: Key, V, Q: KeyArg<K> + ?Sized>(
        &self,
        table: &Table<K, V>,
        key: &Q,
    ) -> Result<(), Error> {
        self.transaction(|tx| tx.remove(table, key))
    }

    /// Every entry of `table` in key order.
    pub fn iter<K: Key, V: DeserializeOwned>(
        &self,
        table: &Table<K, V>,
    ) -> Result<Scan<K, V>, Error> {
        self.raw_scan(table, Bound::Unbounded, Bound::Unbounded)
    }

    /// The entries whose keys start with `prefix`, in key order (see [`PrefixOf`]).
    pub fn scan_prefix<K: Key, V: DeserializeOwned, P: PrefixOf<K> + ?Sized>(
        &self,
        table: &Table<K, V>,
        prefix: &P,
    ) -> Result<Scan<K, V>, Error> {
        let (start, end) = prefix_bounds(prefix);
        self.raw_scan(table, start, end)
    }

    /// The entries whose keys fall in `range`, in key order; an empty or reversed range
    /// yields nothing.
    pub fn range<K: Key, V: DeserializeOwned, Q: KeyArg<K>, R: RangeBounds<Q>>(
        &self,
        table: &Table<K, V>,
        range: R,
    ) -> Result<Scan<K, V>, Error> {
        let (start, end) = range_bounds(&range);
        self.raw_scan(table, start, end)
    }

    fn raw_scan<K: Key, V: DeserializeOwned>(
        &self,
        table: &Table<K, V>,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
    ) -> Result<Scan<K, V>, Error> {
        if is_empty_range(&start, &end) {
            return Ok(Scan::new(table, Box::new(std::iter::empty())));
        }
        Ok(Scan::new(
            table,
            self.store.range(table.name(), start, end)?,
        ))
    }

    /// Flush the engine. Committed transactions are already flushed; this is for callers
    /// that want an explicit durability point (for example before exiting).
    pub fn flush(&self) -> Result<(), Error> {
        self.store.flush()
    }
}

/// A transaction in progress: reads see the committed state plus this transaction's own
/// writes; writes are buffered until the closure returns `Ok`.
pub struct Tx<'a> {
    store: &'a dyn Store,
    writes: Writes,
}

impl Tx<'_> {
    /// The value under `key` (this transaction's own writes included), or `None`.
    pub fn get<K: Key, V: DeserializeOwned, Q: KeyArg<K> + ?Sized>(
        &self,
        table: &Table<K, V>,
        key: &Q,
    ) -> Result<Option<V>, Error> {
        let key = encode_arg(key);
        let pending = self.writes.get(table.name()).and_then(|t| t.get(&key));
        let raw = match pending {
            Some(v) => v.clone(),
            None => self.store.get(table.name(), &key)?,
        };
        raw.map(|v| decode_value(table, &key, &v)).transpose()
    }

    /// Insert or replace a value.
    pub fn insert<K: Key, V: Serialize, Q: KeyArg<K> + ?Sized>(
        &mut self,
        table: &Table<K, V>,
        key: &Q,
        value: &V,
    ) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Encode {
            table: table.name(),
            reason: e.to_string(),
        })?;
        self.pending(table.name())
            .insert(encode_arg(key), Some(bytes));
        Ok(())
    }

    /// Remove a key (absent is fine).
    pub fn remove<K: Key, V, Q: KeyArg<K> + ?Sized>(
        &mut self,
        table: &Table<K, V>,
        key: &Q,
    ) -> Result<(), Error> {
        self.pending(table.name()).insert(encode_arg(key), None);
        Ok(())
    }

    fn pending(&mut self, table: &'static str) -> &mut BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        self.writes.entry(table).or_default()
    }

    /// Every entry of `table` in key order, this transaction's writes included.
    pub fn iter<K: Key, V: DeserializeOwned>(
        &self,
        table: &Table<K, V>,
    ) -> Result<Scan<K, V>, Error> {
        self.raw_scan(table, Bound::Unbounded, Bound::Unbounded)
    }

    /// The entries whose keys start with `prefix`, in key order, this transaction's writes
    /// included.
    pub fn scan_prefix<K: Key, V: DeserializeOwned, P: PrefixOf<K> + ?Sized>(
        &self,
        table: &Table<K, V>,
        prefix: &P,
    ) -> Result<Scan<K, V>, Error> {
        let (start, end) = prefix_bounds(prefix);
        self.raw_scan(table, start, end)
    }

    /// The entries whose keys fall in `range`, in key order, this transaction's writes
    /// included.
    pub fn range<K: Key, V: DeserializeOwned, Q: KeyArg<K>, R: RangeBounds<Q>>(
        &self,
        table: &Table<K, V>,
        range: R,
    ) -> Result<Scan<K, V>, Error> {
        let (start, end) = range_bounds(&range);
        self.raw_scan(table, start, end)
    }

    fn raw_scan<K: Key, V: DeserializeOwned>(
        &self,
        table: &Table<K, V>,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
    ) -> Result<Scan<K, V>, Error> {
        if is_empty_range(&start, &end) {
            return Ok(Scan::new(table, Box::new(std::iter::empty())));
        }
        let mut merged = BTreeMap::new();
        for entry in self.store.range(table.name(), start.clone(), end.clone())? {
            let (k, v) = entry?;
            merged.insert(k, v);
        }
        if let Some(pending) = self.writes.get(table.name()) {
            for (k, v) in pending.range((start, end)) {
                match v {
                    Some(v) => merged.insert(k.clone(), v.clone()),
                    None => merged.remove(k),
                };
            }
        }
        Ok(Scan::new(table, Box::new(merged.into_iter().map(Ok))))
    }
}

/// Typed entries of a scan, in key order. A key or value that does not decode yields an
/// error item ([`Error::CorruptKey`] / [`Error::CorruptValue`]) rather than a panic.
pub struct Scan<K, V> {
    table: &'static str,
    inner: RawIter,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K: Key, V: DeserializeOwned> Scan<K, V> {
    fn new(table: &Table<K, V>, inner: RawIter) -> Self {
        Scan {
            table: table.name(),
            inner,
            types: PhantomData,
        }
    }

    fn decode(&self, (k, v): RawEntry) -> Result<(K, V), Error> {
        let key = K::decode(&k).map_err(|reason| Error::CorruptKey {
            table: self.table,
            key: show_bytes(&k),
            expected: K::NAME,
            reason,
        })?;
        let value = decode_value_named::<V>(self.table, &k, &v)?;
        Ok((key, value))
    }
}

impl<K: Key, V: DeserializeOwned> Iterator for Scan<K, V> {
    type Item = Result<(K, V), Error>;
    fn next(&mut self) -> Option<Self::Item> {
        let raw = self.inner.next()?;
        Some(raw.and_then(|e| self.decode(e)))
    }
}

fn encode_arg<K, Q: KeyArg<K> + ?Sized>(key: &Q) -> Vec<u8> {
    let mut out = Vec::new();
    key.encode_arg(&mut out);
    out
}

fn decode_value<K, V: DeserializeOwned>(
    table: &Table<K, V>,
    key: &[u8],
    v: &[u8],
) -> Result<V, Error> {
    decode_value_named(table.name(), key, v)
}

fn decode_value_named<V: DeserializeOwned>(
    table: &'static str,
    key: &[u8],
    v: &[u8],
) -> Result<V, Error> {
    serde_json::from_slice(v).map_err(|e| Error::CorruptValue {
        table,
        key: show_bytes(key),
        expected: std::any::type_name::<V>(),
        reason: e.to_string(),
    })
}

fn prefix_bounds<K, P: PrefixOf<K> + ?Sized>(prefix: &P) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let mut p = Vec::new();
    prefix.encode_prefix(&mut p);
    let end = match prefix_end(&p) {
        Some(e) => Bound::Excluded(e),
        None => Bound::Unbounded,
    };
    (Bound::Included(p), end)
}

fn range_bounds<K, Q: KeyArg<K>, R: RangeBounds<Q>>(range: &R) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let map = |b: Bound<&Q>| match b {
        Bound::Included(q) => Bound::Included(encode_arg(q)),
        Bound::Excluded(q) => Bound::Excluded(encode_arg(q)),
        Bound::Unbounded => Bound::Unbounded,
    };
    (map(range.start_bound()), map(range.end_bound()))
}

/// True when no key can lie between `start` and `end` (engines may panic on such ranges).
fn is_empty_range(start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> bool {
    use Bound::*;
    match (start, end) {
        (Included(s), Included(e)) => s > e,
        (Included(s), Excluded(e)) | (Excluded(s), Included(e)) | (Excluded(s), Excluded(e)) => {
            s >= e
        }
        _ => false,
    }
}
