//! The default engine: sled 0.34, one sled tree per table, each commit one multi-tree sled
//! transaction applying a batch per touched tree.

use std::convert::Infallible;
use std::ops::Bound;
use std::path::Path;
use std::time::{Duration, Instant};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use crate::engine::{RawIter, Store, Writes};
use crate::Error;

/// How long [`SledStore::open`] waits for a lock held by a handle that is being dropped.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

fn is_lock_held(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// sled as a [`Store`].
pub struct SledStore {
    db: sled::Db,
}

impl SledStore {
    /// Open (creating if needed) the sled database in directory `path`. sled takes a file
    /// lock, so a second process opening the same directory gets an error.
    ///
    /// sled frees its lock lazily after the last handle is dropped (its destructors are
    /// deferred by epoch reclamation), so reopening in the same process can briefly find the
    /// lock still held; a held lock is retried for up to [`LOCK_WAIT`] before giving up.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let start = Instant::now();
        loop {
            match sled::Config::new().path(path).open() {
                Ok(db) => return Ok(SledStore { db }),
                Err(e) if is_lock_held(&e) && start.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => {
                    return Err(Error::Open {
                        path: path.to_path_buf(),
                        source: Box::new(e),
                    })
                }
            }
        }
    }

    /// A sled database in a temporary directory that is deleted when it is dropped.
    pub fn temporary() -> Result<Self, Error> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(Error::engine)?;
        Ok(SledStore { db })
    }

    fn tree(&self, table: &str) -> Result<sled::Tree, Error> {
        self.db.open_tree(table).map_err(Error::engine)
    }
}

impl Store for SledStore {
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let v = self.tree(table)?.get(key).map_err(Error::engine)?;
        Ok(v.map(|v| v.to_vec()))
    }

    fn range(
        &self,
        table: &str,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
    ) -> Result<RawIter, Error> {
        let iter = self.tree(table)?.range::<Vec<u8>, _>((start, end));
        Ok(Box::new(iter.map(|r| match r {
            Ok((k, v)) => Ok((k.to_vec(), v.to_vec())),
            Err(e) => Err(Error::engine(e)),
        })))
    }

    fn commit(&self, writes: &Writes) -> Result<(), Error> {
        if writes.is_empty() {
            return Ok(());
        }
        let trees = writes
            .keys()
            .map(|t| self.tree(t))
            .collect::<Result<Vec<_>, _>>()?;
        let batches: Vec<sled::Batch> = writes
            .values()
            .map(|entries| {
                let mut batch = sled::Batch::default();
                for (k, v) in entries {
                    match v {
                        Some(v) => batch.insert(k.as_slice(), v.as_slice()),
                        None => batch.remove(k.as_slice()),
                    }
                }
                batch
            })
            .collect();
        let result = trees.as_slice().transaction(|views| {
            for (view, batch) in views.iter().zip(&batches) {
                view.apply_batch(batch)?;
            }
            Ok::<(), ConflictableTransactionError<Infallible>>(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Storage(e)) => Err(Error::engine(e)),
            Err(TransactionError::Abort(never)) => match never {},
        }
    }

    fn flush(&self) -> Result<(), Error> {
        self.db.flush().map(|_| ()).map_err(Error::engine)
    }
}
