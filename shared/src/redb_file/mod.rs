//! The one way storehook opens a redb file: owner-only directory and file
//! ([`create_private_dir`], [`open_private_db`]), and [`RedbFile`], one redb
//! file of `storehook serve`, opened once and REOPENED after an I/O
//! failure.
//!
//! redb poisons a database after its first I/O error (a full disk, say): every
//! later call answers `PreviousIo` ("close and re-open the database") even
//! once the cause is gone. A server must heal itself, so every embedded store
//! (queue, state, Play links) holds a [`RedbFile`] instead of a `Database`:
//!
//! - [`RedbFile::db`] hands out the open database, or — after a failure —
//!   tries to reopen the file (at most once per backoff step: 50 ms doubling to
//!   5 s) and answers an error meanwhile, so callers fail fast (intake answers
//!   503 and the store retries; delivery workers back off).
//! - [`RedbFile::check`] is called after a failed write: it probes the database
//!   and, when the storage is poisoned, drops it and starts the reopen cycle.
//! - Reopening runs redb's own repair (from the last durable commit) and then
//!   the owner's `init` hook (tables; the queue rebuilds its in-memory index
//!   from the file, since a commit whose I/O failed may or may not be durable).
//! - [`RedbFile::health`] reports the condition (`/healthz` of `serve`).
//!
//! Nothing acknowledged is lost: a write is answered only after its commit,
//! and redb never exposes a half-written commit.

use redb::{Database, TransactionError};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Opens the database (the real file, or a test backend).
pub(crate) type Opener = Box<dyn Fn() -> Result<Database, String> + Send + Sync>;
/// Runs on every open of the file (the first one and each reopen), before use.
pub(crate) type Init = Box<dyn Fn(&Database, Reopen) -> Result<(), String> + Send + Sync>;

/// Whether [`Init`] runs for the first open or for a reopen after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reopen {
    First,
    AfterFailure,
}

/// The state of a file, as reported to operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Open and writable as far as is known.
    Ok,
    /// Closed after an I/O failure; reopen attempts continue by themselves.
    Failed {
        /// The file.
        path: PathBuf,
        /// The failure that closed it (or the last reopen error).
        error: String,
        /// Reopen attempts so far.
        attempts: u32,
        /// Since when.
        for_ms: u128,
    },
}

struct Failure {
    error: String,
    since: Instant,
    next_try: Instant,
    backoff: Duration,
    attempts: u32,
}

struct Slot {
    db: Option<Arc<Database>>,
    failure: Option<Failure>,
}

/// A redb file that reopens itself after an I/O failure.
pub(crate) struct RedbFile {
    path: PathBuf,
    opener: Opener,
    init: Init,
    slot: Mutex<Slot>,
}

impl fmt::Debug for RedbFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RedbFile {
    /// Opens `dir/name` (the directory created owner-only when absent, the file
    /// owner-only) and runs `init`: how the queue, the state and the Play links
    /// open their files.
    pub(crate) fn open_in(dir: &Path, name: &str, init: Init) -> Result<Arc<Self>, String> {
        create_private_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Self::open(&dir.join(name), init)
    }

    /// Opens `path` (created if absent) and runs `init`. The first open must
    /// succeed: a server that cannot open its files does not start.
    pub(crate) fn open(path: &Path, init: Init) -> Result<Arc<Self>, String> {
        let owned = path.to_path_buf();
        let opener: Opener = Box::new(move || open_private_db(&owned));
        Self::open_with(path, opener, init)
    }

    /// [`RedbFile::open`] with an explicit opener (tests: a failing backend).
    pub(crate) fn open_with(path: &Path, opener: Opener, init: Init) -> Result<Arc<Self>, String> {
        let db = opener()?;
        init(&db, Reopen::First)?;
        Ok(Arc::new(Self {
            path: path.to_path_buf(),
            opener,
            init,
            slot: Mutex::new(Slot {
                db: Some(Arc::new(db)),
                failure: None,
            }),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open database; after a failure, a reopen attempt when one is due,
    /// else the failure.
    pub(crate) fn db(&self) -> Result<Arc<Database>, String> {
        let mut slot = self.lock();
        if let Some(db) = &slot.db {
            return Ok(db.clone());
        }
        let now = Instant::now();
        let Some(failure) = slot.failure.as_mut() else {
            return Err("storage closed".into());
        };
        if now < failure.next_try {
            return Err(format!("storage unavailable: {}", failure.error));
        }
        failure.attempts = failure.attempts.saturating_add(1);
        match (self.opener)().and_then(|db| (self.init)(&db, Reopen::AfterFailure).map(|()| db)) {
            Ok(db) => {
                tracing::warn!(
                    path = %self.path.display(),
                    attempts = failure.attempts,
                    after_ms = failure.since.elapsed().as_millis(),
                    "storage reopened after an I/O failure"
                );
                let db = Arc::new(db);
                slot.db = Some(db.clone());
                slot.failure = None;
                Ok(db)
            }
            Err(e) => {
                failure.backoff = (failure.backoff * 2).min(MAX_BACKOFF);
                failure.next_try = now + failure.backoff;
                failure.error = e;
                Err(format!("storage unavailable: {}", failure.error))
            }
        }
    }

    /// After a failed operation on `db`: if the storage itself failed (redb
    /// poisons itself after an I/O error), close the file and start the reopen
    /// cycle. Returns whether it did.
    pub(crate) fn check(&self, db: &Arc<Database>, error: &str) -> bool {
        let poisoned = match db.begin_write() {
            Ok(tx) => {
                drop(tx); // aborted: nothing was written
                false
            }
            Err(TransactionError::Storage(_)) => true,
            Err(_) => false,
        };
        if poisoned {
            self.fail(db, error);
        }
        poisoned
    }

    /// Closes `db` (if it is still the open one) after a storage failure.
    pub(crate) fn fail(&self, db: &Arc<Database>, error: &str) {
        let mut slot = self.lock();
        if !slot.db.as_ref().is_some_and(|open| Arc::ptr_eq(open, db)) {
            return; // already closed (and maybe reopened) by someone else
        }
        tracing::error!(
            path = %self.path.display(),
            error,
            "storage I/O failure: closing the file, reopening with backoff"
        );
        // The last handle to go closes the file; a reopen before that is
        // refused by redb's lock and simply retried.
        slot.db = None;
        let now = Instant::now();
        slot.failure = Some(Failure {
            error: error.to_owned(),
            since: now,
            next_try: now + FIRST_BACKOFF,
            backoff: FIRST_BACKOFF,
            attempts: 0,
        });
    }

    /// The file's condition.
    pub fn health(&self) -> Health {
        match &self.lock().failure {
            None => Health::Ok,
            Some(f) => Health::Failed {
                path: self.path.clone(),
                error: f.error.clone(),
                attempts: f.attempts,
                for_ms: f.since.elapsed().as_millis(),
            },
        }
    }

    /// When the next reopen attempt is due (`None` while open).
    pub(crate) fn next_try(&self) -> Option<Instant> {
        self.lock().failure.as_ref().map(|f| f.next_try)
    }
}

/// Creates `dir` (and missing parents) readable by its owner only (0700 on
/// Unix, set at creation). An existing directory open to group or others is
/// left as it is (it may be shared, e.g. `.`) but logged as a warning: every
/// file storehook keeps in it is created owner-only anyway.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if let Ok(meta) = std::fs::metadata(dir)
            && meta.is_dir()
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the data dir is open to other users; `chmod 700` it (its files are owner-only)"
            );
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Makes sure the file `path` exists and is readable and writable by its
/// owner only (0600 on Unix): a new file is created with that mode (never
/// chmod-ed afterwards); an existing file open to group or others (written by
/// an older version) is tightened to it.
pub fn ensure_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        let mut perms = file.metadata()?.permissions();
        if perms.mode() & 0o077 != 0 {
            perms.set_mode(0o600);
            file.set_permissions(perms)?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        options.open(path).map(drop)
    }
}

/// Writes `contents` to a NEW file `path`, owner-only (0600 on Unix) from
/// its creation. Fails if the file exists (`ErrorKind::AlreadyExists`).
pub fn write_private_new(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Opens (or creates) the redb database `path`, owner-only (see
/// [`ensure_private_file`]).
pub fn open_private_db(path: &Path) -> Result<Database, String> {
    ensure_private_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Database::create(path).map_err(|e| e.to_string())
}

pub(crate) mod group_commit;

#[cfg(test)]
pub(crate) mod testing {
    //! A redb storage backend that can be told to fail like a full disk.
    use redb::backends::FileBackend;
    use redb::{BackendError, StorageBackend};
    use std::ops::Bound;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Shared switch: while on, every write, set_len and sync fails with ENOSPC.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct DiskFull(Arc<AtomicBool>);

    impl DiskFull {
        pub(crate) fn set(&self, full: bool) {
            self.0.store(full, Ordering::SeqCst);
        }
        fn check(&self) -> Result<(), std::io::Error> {
            if self.0.load(Ordering::SeqCst) {
                Err(std::io::Error::from_raw_os_error(28)) // ENOSPC
            } else {
                Ok(())
            }
        }
    }

    #[derive(Debug)]
    pub(crate) struct FlakyBackend {
        pub(crate) inner: FileBackend,
        pub(crate) full: DiskFull,
    }

    impl StorageBackend for FlakyBackend {
        fn len(&self) -> Result<u64, std::io::Error> {
            self.inner.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
            self.inner.read(offset, out)
        }
        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            self.full.check()?;
            self.inner.set_len(len)
        }
        fn sync_data(&self) -> Result<(), std::io::Error> {
            self.full.check()?;
            self.inner.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            self.full.check()?;
            self.inner.write(offset, data)
        }
        fn close(&self) -> Result<(), std::io::Error> {
            self.inner.close()
        }
        fn try_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
            self.inner.try_lock_range(s, e)
        }
        fn try_lock_shared_range(
            &self,
            s: Bound<u64>,
            e: Bound<u64>,
        ) -> Result<bool, BackendError> {
            self.inner.try_lock_shared_range(s, e)
        }
        fn lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
            self.inner.lock_range(s, e)
        }
        fn lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
            self.inner.lock_shared_range(s, e)
        }
        fn unlock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
            self.inner.unlock_range(s, e)
        }
    }

    /// An opener of `path` through a [`FlakyBackend`] driven by `full`.
    pub(crate) fn opener(path: &std::path::Path, full: &DiskFull) -> super::Opener {
        let (path, full) = (path.to_path_buf(), full.clone());
        Box::new(move || {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| e.to_string())?;
            let inner = FileBackend::new(file).map_err(|e| e.to_string())?;
            redb::Database::builder()
                .create_with_backend(FlakyBackend {
                    inner,
                    full: full.clone(),
                })
                .map_err(|e| e.to_string())
        })
    }
}
