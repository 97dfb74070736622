//! One pinned, named thread per core, owning its sockets, ring, buffers and stats.

use std::{io, sync::Arc, thread::JoinHandle};

use hdrhistogram::Histogram;

use crate::{
    io::{Engine, IoConfig, RunFn, Socket, Stop},
    live::LiveSlot,
    policy::Policy,
    stats::{Counters, SharedCounters},
    sys::affinity,
};

/// The receive path a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Uring,
    Mmsg,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Uring => "uring",
            Backend::Mmsg => "mmsg",
        }
    }

    fn run_fn(self) -> RunFn {
        match self {
            Backend::Uring => crate::io::uring::run,
            Backend::Mmsg => crate::io::mmsg::run,
        }
    }
}

/// What a worker hands back when it ends.
pub struct WorkerResult {
    pub counters: Counters,
    /// What the worker recorded and had not handed over to [`LiveSlot`].
    pub latency: Histogram<u64>,
}

/// A running worker.
pub struct Worker {
    pub id: usize,
    pub cpu: usize,
    pub shared: Arc<SharedCounters>,
    pub live: Arc<LiveSlot>,
    handle: JoinHandle<io::Result<WorkerResult>>,
}

impl Worker {
    /// Starts worker `id` on `cpu` with its own sockets.
    pub fn spawn(
        id: usize,
        cpu: usize,
        sockets: Vec<Socket>,
        backend: Backend,
        cfg: IoConfig,
        stop: Arc<Stop>,
        policy: Policy,
    ) -> io::Result<Worker> {
        let shared = Arc::new(SharedCounters::default());
        let published = Arc::clone(&shared);
        let live = Arc::new(LiveSlot::default());
        let worker_live = Arc::clone(&live);
        let handle = std::thread::Builder::new()
            .name(format!("reflector-{id}"))
            .spawn(move || {
                affinity::pin_current_thread(cpu)?;
                worker_live.set_thread();
                // The ring is created here, on the thread that uses it
                // (SINGLE_ISSUER rings fail every submit from another thread).
                let mut engine = Engine::new(sockets, &cfg, published, worker_live, stop, policy);
                (backend.run_fn())(&mut engine, &cfg)?;
                Ok(WorkerResult {
                    counters: engine.counters,
                    latency: engine.latency,
                })
            })?;
        Ok(Worker {
            id,
            cpu,
            shared,
            live,
            handle,
        })
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for the worker to end.
    pub fn join(self) -> io::Result<WorkerResult> {
        self.handle
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("worker thread panicked")))
    }
}
