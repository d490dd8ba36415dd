//! Group commit for the embedded redb files (`storehook serve`).
//!
//! redb has one writer at a time and every durable commit is an fsync plus a
//! rewrite of the touched tree pages. With one transaction per operation, the
//! writer lock — not the CPU or the disk — caps the local server (measured:
//! append, lease and ack of the queue plus apply and delivery record of the
//! state were five serialized commits per notification).
//!
//! A [`GroupCommitter`] owns one thread that takes every [`Job`] waiting,
//! writes them one after the other inside ONE write transaction, commits once
//! (one fsync) and only then tells each job how the commit went. The semantics
//! are those of one transaction per job, in arrival order: a job sees the
//! writes of the jobs before it, and no job's effect is visible or answered
//! before it is durable. If a write or the commit fails, nothing of the batch
//! is committed and every job is told so (its caller retries).
//!
//! Dropping the last handle closes the channel and JOINS the thread, so the
//! file is closed when the owner is gone (redb refuses a second open of a
//! file that is still open: a restart in the same process must not race).
//!
//! After a failed batch the committer asks the [`RedbFile`] whether the
//! storage itself failed (a full disk poisons a redb database); if so the file
//! is closed and reopened with backoff. Meanwhile every job fails at once (the
//! caller answers 503 or retries later), and the thread wakes by itself at
//! each reopen attempt, so the server heals without a restart.

use crate::redb_file::RedbFile;
use redb::{Database, WriteTransaction};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;

/// At most this many jobs share one transaction (bounds the latency of the
/// first job of a large batch and the transaction's memory).
const MAX_BATCH: usize = 256;

/// One unit of work of a group commit.
pub(crate) trait Job: Send {
    /// Writes inside the shared transaction. An `Err` is a storage failure: it
    /// aborts the whole batch. Failures that concern only this job (bad data)
    /// must be kept in the job and reported by [`Job::finish`], after writing
    /// nothing.
    fn write(&mut self, tx: &WriteTransaction) -> Result<(), String>;

    /// Called once, after the commit (or the failure) of the batch.
    fn finish(self: Box<Self>, committed: Result<(), String>);
}

struct Inner {
    sender: Mutex<Option<mpsc::Sender<Box<dyn Job>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let lock_sender = self.sender.get_mut().unwrap_or_else(|e| e.into_inner());
        drop(lock_sender.take());
        let thread = self.thread.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = thread.take()
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
    }
}

/// The handle: cheap to clone, sends jobs to the committer thread.
#[derive(Clone)]
pub(crate) struct GroupCommitter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GroupCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCommitter")
    }
}

impl GroupCommitter {
    /// Starts the committer thread of `file` (named `name`).
    pub(crate) fn start(file: Arc<RedbFile>, name: &str) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel::<Box<dyn Job>>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(&file, &receiver))?;
        Ok(Self {
            inner: Arc::new(Inner {
                sender: Mutex::new(Some(sender)),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Queues `job` for the next commit. If the committer is gone, the job is
    /// finished at once with an error.
    pub(crate) fn submit(&self, job: Box<dyn Job>) {
        let sender = self
            .inner
            .sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match sender {
            Some(s) => {
                if let Err(mpsc::SendError(job)) = s.send(job) {
                    job.finish(Err("the commit thread has stopped".into()));
                }
            }
            None => job.finish(Err("the database is closed".into())),
        }
    }
}

#[cfg(test)]
impl GroupCommitter {
    /// Tests: makes the commit thread start a batch that holds only a gate and
    /// keeps it inside that transaction until the returned sender is used (or
    /// dropped). Jobs submitted meanwhile wait, and form the next batch together.
    pub(crate) fn hold(&self) -> mpsc::Sender<()> {
        struct Gate {
            entered: mpsc::Sender<()>,
            go: mpsc::Receiver<()>,
        }
        impl Job for Gate {
            fn write(&mut self, _: &WriteTransaction) -> Result<(), String> {
                let _ = self.entered.send(());
                let _ = self.go.recv();
                Ok(())
            }
            fn finish(self: Box<Self>, _: Result<(), String>) {}
        }
        let (go, gate) = mpsc::channel();
        let (entered, inside) = mpsc::channel();
        self.submit(Box::new(Gate { entered, go: gate }));
        let _ = inside.recv();
        go
    }
}

fn run(file: &RedbFile, receiver: &mpsc::Receiver<Box<dyn Job>>) {
    loop {
        let first = match file.next_try() {
            None => match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            // Closed after a failure: wake for the next reopen attempt even
            // when nobody writes.
            Some(at) => match receiver.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = file.db();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            },
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let result = match file.db() {
            Ok(db) => {
                let result = commit(&db, &mut jobs);
                if let Err(e) = &result {
                    file.check(&db, e);
                }
                result
            }
            Err(e) => Err(e),
        };
        for job in jobs {
            job.finish(result.clone());
        }
    }
}

fn commit(db: &Database, jobs: &mut [Box<dyn Job>]) -> Result<(), String> {
    let tx = db.begin_write().map_err(|e| e.to_string())?;
    for job in jobs.iter_mut() {
        // On error `tx` is dropped uncommitted: redb aborts it.
        job.write(&tx)?;
    }
    tx.commit().map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");

    struct Put {
        key: u64,
        fail: bool,
        done: mpsc::Sender<(u64, Result<(), String>)>,
    }

    impl Job for Put {
        fn write(&mut self, tx: &WriteTransaction) -> Result<(), String> {
            if self.fail {
                return Err("boom".into());
            }
            let mut t = tx.open_table(T).map_err(|e| e.to_string())?;
            // Each job sees the previous jobs' writes: store the running count.
            let before = t.len().map_err(|e| e.to_string())?;
            t.insert(self.key, before).map_err(|e| e.to_string())?;
            Ok(())
        }
        fn finish(self: Box<Self>, committed: Result<(), String>) {
            let _ = self.done.send((self.key, committed));
        }
    }

    fn open(dir: &std::path::Path) -> Arc<RedbFile> {
        RedbFile::open(&dir.join("t.redb"), Box::new(|_, _| Ok(()))).unwrap()
    }

    fn put(c: &GroupCommitter, key: u64, done: &mpsc::Sender<(u64, Result<(), String>)>) {
        c.submit(Box::new(Put {
            key,
            fail: false,
            done: done.clone(),
        }));
    }

    fn keys(file: &RedbFile) -> Vec<u64> {
        let db = file.db().unwrap();
        let r = db.begin_read().unwrap();
        match r.open_table(T) {
            Ok(t) => t.iter().unwrap().map(|x| x.unwrap().0.value()).collect(),
            Err(_) => Vec::new(),
        }
    }

    #[test]
    fn a_full_disk_fails_writes_fast_and_the_file_heals_without_a_restart() {
        use crate::redb_file::{Health, testing};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let full = testing::DiskFull::default();
        let file = RedbFile::open_with(
            &path,
            testing::opener(&path, &full),
            Box::new(|_, _| Ok(())),
        )
        .unwrap();
        let c = GroupCommitter::start(file.clone(), "test-commit").unwrap();
        let (done, results) = mpsc::channel();
        // GIVEN a committed write
        put(&c, 1, &done);
        assert_eq!(results.recv().unwrap(), (1, Ok(())));
        // WHEN the disk runs full
        full.set(true);
        put(&c, 2, &done);
        let (_, r) = results.recv().unwrap();
        assert!(r.is_err(), "a write on a full disk is refused");
        // THEN the file is reported failed and later writes fail at once
        assert!(
            matches!(file.health(), Health::Failed { .. }),
            "{:?}",
            file.health()
        );
        put(&c, 3, &done);
        assert!(results.recv().unwrap().1.is_err());
        // WHEN space returns, THEN the committer reopens by itself (no new write
        // needed to trigger it) and writes succeed again
        full.set(false);
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while file.health() != Health::Ok {
            assert!(
                Instant::now() < deadline,
                "did not heal: {:?}",
                file.health()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        put(&c, 4, &done);
        assert_eq!(results.recv().unwrap(), (4, Ok(())));
        // and what was acknowledged before the failure is still there; what
        // was refused is not
        assert_eq!(keys(&file), vec![1, 4]);
    }

    #[test]
    fn jobs_commit_in_order_and_the_file_is_closed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let (done, results) = mpsc::channel();
        {
            let c = GroupCommitter::start(open(dir.path()), "test-commit").unwrap();
            for key in 0..100 {
                c.submit(Box::new(Put {
                    key,
                    fail: false,
                    done: done.clone(),
                }));
            }
            for _ in 0..100 {
                let (_, r) = results.recv().unwrap();
                assert_eq!(r, Ok(()));
            }
        } // dropped: the thread is joined and the file closed
        let db = Database::create(dir.path().join("t.redb")).expect("reopen at once");
        let r = db.begin_read().unwrap();
        let t = r.open_table(T).unwrap();
        for key in 0..100u64 {
            assert_eq!(t.get(key).unwrap().unwrap().value(), key, "arrival order");
        }
    }

    #[test]
    fn a_failed_write_aborts_its_whole_batch_and_later_batches_still_commit() {
        let dir = tempfile::tempdir().unwrap();
        let file = open(dir.path());
        let (done, results) = mpsc::channel();
        let c = GroupCommitter::start(file.clone(), "test-commit").unwrap();
        // Jobs sent back to back usually share a batch; whether or not they do,
        // the failing job is refused and nothing after a failure is half-written.
        for (key, fail) in [(1, false), (2, true), (3, false)] {
            c.submit(Box::new(Put {
                key,
                fail,
                done: done.clone(),
            }));
        }
        let mut outcome: Vec<(u64, Result<(), String>)> =
            (0..3).map(|_| results.recv().unwrap()).collect();
        outcome.sort_by_key(|(k, _)| *k);
        assert_eq!(outcome[1], (2, Err("boom".into())));
        let committed = keys(&file);
        for (key, result) in &outcome {
            assert_eq!(
                committed.contains(key),
                result.is_ok(),
                "job {key}: answered {result:?}, committed {committed:?}"
            );
        }
        // a later batch is unaffected
        c.submit(Box::new(Put {
            key: 9,
            fail: false,
            done,
        }));
        assert_eq!(results.recv().unwrap(), (9, Ok(())));
    }
}
