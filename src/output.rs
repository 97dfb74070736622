//! Stdout from a thread of its own, so that a stop never waits on it.
//!
//! A reflector's stdout may be a pipe nobody reads, `/dev/full`, a closed
//! descriptor or `| head -1`. Lines go through a bounded queue to one writer
//! thread; the runtime never blocks on a write. What failed is kept and
//! told once, at the end: [`Output::finish`] waits a bounded time for the
//! last line (the summary) and says whether it was written.

use std::{
    io::{self, Write},
    sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
    thread::JoinHandle,
    time::Duration,
};

/// Lines held while stdout is slow; beyond that they are dropped (and the
/// drop is reported at the end).
const QUEUE: usize = 1024;

/// Why stdout did not get every line.
#[derive(Debug)]
pub enum OutputError {
    /// A write failed (ENOSPC on /dev/full, EPIPE after `| head -1`, EBADF
    /// when closed).
    Write(io::Error),
    /// stdout did not take the last lines within the time given.
    Blocked(Duration),
    /// Lines were dropped because stdout was too slow.
    Dropped(u64),
}

impl std::fmt::Display for OutputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutputError::Write(e) => write!(f, "writing to stdout failed ({e})"),
            OutputError::Blocked(t) => write!(
                f,
                "stdout is blocked (nobody reads it): the last lines were not written within {t:?}"
            ),
            OutputError::Dropped(n) => {
                write!(f, "stdout was too slow: {n} line(s) were dropped")
            }
        }
    }
}

/// The writer thread's handle.
pub struct Output {
    tx: Option<SyncSender<String>>,
    done: Receiver<Result<(), io::Error>>,
    dropped: std::cell::Cell<u64>,
    handle: Option<JoinHandle<()>>,
}

impl Output {
    /// Starts the writer thread (named `stdout-writer`).
    pub fn new() -> io::Result<Output> {
        let (tx, rx) = mpsc::sync_channel::<String>(QUEUE);
        let (done_tx, done) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("stdout-writer".into())
            .spawn(move || {
                let mut first_error = None;
                for line in rx {
                    if first_error.is_some() {
                        continue; // keep draining: senders never block
                    }
                    let mut out = io::stdout().lock();
                    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
                        first_error = Some(e);
                    }
                }
                let _ = done_tx.send(first_error.map_or(Ok(()), Err));
            })?;
        Ok(Output {
            tx: Some(tx),
            done,
            dropped: std::cell::Cell::new(0),
            handle: Some(handle),
        })
    }

    /// Queues one line (it may hold newlines); never blocks.
    pub fn line(&self, line: String) {
        if let Some(tx) = &self.tx {
            match tx.try_send(line) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.dropped.set(self.dropped.get() + 1);
                }
            }
        }
    }

    /// Waits up to `wait` for every queued line to be written.
    pub fn finish(mut self, wait: Duration) -> Result<(), OutputError> {
        drop(self.tx.take());
        let r = match self.done.recv_timeout(wait) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(OutputError::Write(e)),
            Err(RecvTimeoutError::Timeout) => Err(OutputError::Blocked(wait)),
            Err(RecvTimeoutError::Disconnected) => Err(OutputError::Write(io::Error::other(
                "the writer thread ended",
            ))),
        };
        if r.is_ok() {
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
            if self.dropped.get() > 0 {
                return Err(OutputError::Dropped(self.dropped.get()));
            }
        }
        // A writer still blocked in write(2) is left behind: the process
        // exits without it.
        r
    }
}
