//! The threads that send, receive and account.
//!
//! Flows are split into groups. Open loop (`--rate`): each group has a
//! sender thread that paces batches and a receiver thread that owns the
//! group's [`Tracker`]s; the sender tells the receiver what it sent through a
//! channel of [`Record`]s and reads back how far each flow is resolved, so it
//! never runs more than half a tracker ring ahead. Closed loop (`--window`):
//! one thread per group sends, receives and accounts, refilling each flow's
//! window as echoes come back or time out.
//!
//! Every loop reads the clock and stops by itself: senders at the end of the
//! run, receivers once every datagram sent is received or timed out (the
//! drain, at most `--timeout` long), everyone at once on a second signal.
//!
//! What is on the wire is the [`Protocol`]'s: bench headers, or with
//! `--stamp` STAMP test packets; the threads and trackers are the same.

use std::{
    io,
    sync::{
        atomic::{
            AtomicBool, AtomicU64, AtomicU8,
            Ordering::{Acquire, Relaxed, Release},
        },
        mpsc, Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

use super::{
    header::{Phase, Reject},
    latency::Latency,
    protocol::Protocol,
    socket::{FlowSocket, PollSet, RecvBatch, SendBatch},
    tracker::{room, Echo, PhaseCounts, Record, Tracker},
    Config, Load,
};

/// Run state, raised by the main thread: senders stop at [`STOP_SENDING`],
/// everyone stops at [`ABORT`] (what is outstanding is counted lost).
pub const RUNNING: u8 = 0;
pub const STOP_SENDING: u8 = 1;
pub const ABORT: u8 = 2;

/// What the threads share with the main thread.
pub struct Shared {
    /// Time zero: send stamps are nanoseconds since.
    pub epoch: Instant,
    pub state: AtomicU8,
    /// Set once by the first thread to turn GSO off.
    gso_refused: AtomicBool,
    /// By flow id: the flow's first measured-phase sequence (`u64::MAX`
    /// until it is sent). STAMP packets carry no warmup flag; phases are
    /// prefixes of each flow's sequence, so this tells them apart.
    measured_from: Vec<AtomicU64>,
}

impl Shared {
    pub fn new(flows: usize) -> Shared {
        Shared {
            epoch: Instant::now(),
            state: AtomicU8::new(RUNNING),
            gso_refused: AtomicBool::new(false),
            measured_from: (0..flows).map(|_| AtomicU64::new(u64::MAX)).collect(),
        }
    }

    /// The phase sequence `seq` of flow `flow` was sent in, for datagrams
    /// that do not say. The sender stores the boundary (Release) before the
    /// `sendmmsg` of its first measured datagram, and a reply is read only
    /// after that send: the kernel's socket queue locks on the way order
    /// the store before the receiver's load.
    pub fn phase_of(&self, flow: u16, seq: u64) -> Phase {
        match self.measured_from.get(usize::from(flow)) {
            Some(b) if seq >= b.load(Acquire) => Phase::Measured,
            _ => Phase::Warmup,
        }
    }

    /// Notes that flow `flow` sends measured-phase datagrams from `seq` on
    /// (only the first call per flow counts).
    fn measuring_from(&self, flow: u16, seq: u64) {
        if let Some(b) = self.measured_from.get(usize::from(flow)) {
            if b.load(Relaxed) == u64::MAX {
                b.store(seq, Release);
            }
        }
    }

    /// Whether a kernel refused GSO during the run (it is off since).
    pub fn gso_refused(&self) -> bool {
        self.gso_refused.load(Relaxed)
    }

    /// Nanoseconds since the epoch (CLOCK_MONOTONIC), never 0.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1
    }
}

/// Live counters of one thread, read by the main thread for the interval line.
pub struct Live {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub lost: AtomicU64,
    pub latency: Mutex<Latency>,
}

impl Live {
    pub fn new(cfg: &Config) -> Live {
        Live {
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            latency: Mutex::new(Latency::new(cfg)),
        }
    }
}

/// Everything a thread counted, summed over threads at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Indexed by [`Phase`].
    pub counts: [PhaseCounts; 2],
    /// Datagrams read from the sockets, whatever they were.
    pub echoes: u64,
    pub corrupt: u64,
    pub invalid: u64,
    /// Sends refused with an errno other than EAGAIN/ENOBUFS/ECONNREFUSED.
    pub send_errors: u64,
    /// The first such errno.
    pub first_send_error: Option<i32>,
    /// ECONNREFUSED from a send or receive: the target sent ICMP port unreachable.
    pub refused: u64,
    /// Sends the kernel could not take at once (EAGAIN/ENOBUFS, or a partial batch).
    pub send_stalls: u64,
    /// Times a sender waited because a flow had half a tracker ring in flight.
    pub tracking_stalls: u64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            a.add(b);
        }
        self.echoes += o.echoes;
        self.corrupt += o.corrupt;
        self.invalid += o.invalid;
        self.send_errors += o.send_errors;
        self.first_send_error = self.first_send_error.or(o.first_send_error);
        self.refused += o.refused;
        self.send_stalls += o.send_stalls;
        self.tracking_stalls += o.tracking_stalls;
    }

    fn count_send_error(&mut self, e: &io::Error) {
        match e.raw_os_error() {
            Some(libc::EAGAIN | libc::ENOBUFS) => self.send_stalls += 1,
            Some(libc::ECONNREFUSED) => self.refused += 1,
            errno => {
                self.send_errors += 1;
                self.first_send_error = self.first_send_error.or(errno);
            }
        }
    }
}

/// One flow: its id on the wire and its socket.
pub struct Flow {
    pub id: u16,
    pub sock: Arc<FlowSocket>,
}

/// The running threads.
pub struct Threads {
    handles: Vec<thread::JoinHandle<Totals>>,
    pub lives: Vec<Arc<Live>>,
}

impl Threads {
    pub fn finished(&self) -> bool {
        self.handles.iter().all(|h| h.is_finished())
    }

    /// What every thread counted so far (all phases), and the round-trip
    /// times recorded so far, added over threads.
    pub fn snapshot(&self, cfg: &Config) -> (super::intervals::Counts, Histogram<u64>) {
        let mut c = super::intervals::Counts::default();
        let mut rtt = super::latency::new_histogram(cfg.rtt_high_ns());
        for live in &self.lives {
            c.sent += live.sent.load(Relaxed);
            c.received += live.received.load(Relaxed);
            c.lost += live.lost.load(Relaxed);
            let l = live.latency.lock().unwrap_or_else(|p| p.into_inner());
            let _ = rtt.add(&l.rtt);
        }
        (c, rtt)
    }

    /// Waits for every thread; a thread's panic is re-raised here.
    pub fn join(self) -> Totals {
        let mut t = Totals::default();
        for h in self.handles {
            match h.join() {
                Ok(part) => t.add(&part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        t
    }
}

/// Starts the threads over `flows`, grouped as the configuration says.
pub fn start(cfg: &Config, flows: Vec<Flow>, shared: &Arc<Shared>) -> io::Result<Threads> {
    let groups = cfg.groups.min(flows.len()).max(1);
    let mut grouped: Vec<Vec<Flow>> = (0..groups).map(|_| Vec::new()).collect();
    for (i, f) in flows.into_iter().enumerate() {
        grouped[i % groups].push(f);
    }
    let cpu = |i: usize| cfg.cpus.as_ref().map(|c| c[i % c.len()]);
    let mut threads = Threads {
        handles: Vec::new(),
        lives: Vec::new(),
    };
    for (g, flows) in grouped.into_iter().enumerate() {
        let live = Arc::new(Live::new(cfg));
        threads.lives.push(live.clone());
        match cfg.load {
            Load::Window(window) => {
                let (cfg, shared) = (cfg.clone(), shared.clone());
                let name = format!("bench-loop-{g}");
                let h = spawn(name, cpu(g), move || {
                    closed_loop(&cfg, &shared, flows, window, &live)
                })?;
                threads.handles.push(h);
            }
            Load::Rate(rate) => {
                let flows = Arc::new(flows);
                let swept: Arc<Vec<AtomicU64>> =
                    Arc::new(flows.iter().map(|_| AtomicU64::new(0)).collect());
                let (tx, rx) = mpsc::channel();
                let share = flows.len() as f64 / cfg.flows as f64;
                let pps = (rate > 0).then_some(rate as f64 * share);
                let rx_live = Arc::new(Live::new(cfg));
                threads.lives.push(rx_live.clone());
                let (c, s, f, sw) = (cfg.clone(), shared.clone(), flows.clone(), swept.clone());
                threads
                    .handles
                    .push(spawn(format!("bench-tx-{g}"), cpu(2 * g), move || {
                        open_loop_send(&c, &s, &f, &sw, pps, tx, &live)
                    })?);
                let (c, s) = (cfg.clone(), shared.clone());
                threads
                    .handles
                    .push(spawn(format!("bench-rx-{g}"), cpu(2 * g + 1), move || {
                        open_loop_receive(&c, &s, &flows, &swept, rx, &rx_live)
                    })?);
            }
        }
    }
    Ok(threads)
}

fn spawn(
    name: String,
    cpu: Option<usize>,
    f: impl FnOnce() -> Totals + Send + 'static,
) -> io::Result<thread::JoinHandle<Totals>> {
    thread::Builder::new().name(name.clone()).spawn(move || {
        if let Some(cpu) = cpu {
            if let Err(e) = crate::sys::affinity::pin_current_thread(cpu) {
                eprintln!("bench: cannot pin {name} to cpu {cpu}: {e}; running unpinned");
            }
        }
        f()
    })
}

/// Builds and sends probes for one flow at a time.
struct Prober {
    buf: Vec<u8>,
    size: usize,
    /// Datagrams per GSO train; 1 when GSO is off.
    segments: usize,
    /// By flow id: UDP_SEGMENT is still set on that flow's socket.
    segment_set: Vec<bool>,
    max: usize,
    batch: SendBatch,
    protocol: Protocol,
}

impl Prober {
    fn new(cfg: &Config) -> Prober {
        let segments = cfg.gso_segments.unwrap_or(1);
        let max = cfg.batch;
        let protocol = Protocol::new(cfg);
        let t = protocol.template(cfg.size);
        let mut buf = Vec::with_capacity(max * cfg.size);
        for _ in 0..max {
            buf.extend_from_slice(&t);
        }
        Prober {
            buf,
            size: cfg.size,
            segments,
            segment_set: vec![segments > 1; cfg.flows],
            max,
            batch: SendBatch::new(max.div_ceil(segments)),
            protocol,
        }
    }

    /// Sends up to `n` datagrams on `flow`, sequences from `seq`, stamped
    /// `sent_ns` (STAMP packets: T1, CLOCK_REALTIME, read here). Returns
    /// how many the kernel accepted (GSO segments counted one by one).
    fn send(
        &mut self,
        flow: &Flow,
        seq: u64,
        n: usize,
        phase: Phase,
        sent_ns: u64,
        shared: &Shared,
    ) -> io::Result<usize> {
        let n = n.min(self.max);
        if phase == Phase::Measured && !self.protocol.phase_on_wire() {
            shared.measuring_from(flow.id, seq);
        }
        let stamp = self.protocol.send_stamp(sent_ns);
        for (i, d) in self.buf.chunks_mut(self.size).take(n).enumerate() {
            self.protocol
                .encode(d, flow.id, seq + i as u64, phase, stamp);
        }
        let bytes = &self.buf[..n * self.size];
        if shared.gso_refused() {
            self.segments = 1;
        }
        if self.segments == 1 && self.segment_set[usize::from(flow.id)] {
            // The kernel checks a socket's gso_size even for one datagram.
            flow.sock.set_gso_segment(0)?;
            self.segment_set[usize::from(flow.id)] = false;
        }
        match self
            .batch
            .send(&flow.sock, bytes, self.segments * self.size)
        {
            Ok(msgs) => Ok((msgs * self.segments).min(n)),
            // The route refused GSO (see `route_refuses_train`): turn it off
            // everywhere and resend plain.
            Err(e) if self.segments > 1 && crate::sys::gso::route_refuses_train(&e) => {
                if !shared.gso_refused.swap(true, Relaxed) {
                    eprintln!(
                        "bench: the kernel refused a UDP GSO train ({e}); sending without --gso"
                    );
                }
                self.send(flow, seq, n, phase, sent_ns, shared)
            }
            Err(e) => Err(e),
        }
    }
}

/// Reads and accounts the replies of one flow group.
struct Collector {
    batch: RecvBatch,
    protocol: Protocol,
    polls: PollSet,
    totals: Totals,
}

impl Collector {
    fn new(cfg: &Config, flows: &[Flow]) -> Collector {
        Collector {
            batch: RecvBatch::with_gro(cfg.rx_slots(), cfg.rx_slot_len(), cfg.gro),
            protocol: Protocol::new(cfg),
            polls: PollSet::new(flows.iter().map(|f| &*f.sock)),
            totals: Totals::default(),
        }
    }

    /// Waits up to `timeout` for echoes, then reads every ready flow dry,
    /// sweeping each tracker at the time of each read.
    fn poll_and_read(
        &mut self,
        flows: &[Flow],
        trackers: &mut [Tracker],
        timeout: Duration,
        shared: &Shared,
        live: &Live,
    ) {
        match self.polls.wait(timeout) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                // poll(2) fails only for EFAULT/EINVAL/ENOMEM; say so and keep the loop timed.
                eprintln!("bench: poll: {e}");
                thread::sleep(timeout);
                return;
            }
        }
        let mut latency = live.latency.lock().unwrap_or_else(|p| p.into_inner());
        for (i, (flow, tracker)) in flows.iter().zip(trackers.iter_mut()).enumerate() {
            if !self.polls.ready(i) {
                continue;
            }
            loop {
                let n = match self.batch.recv(&flow.sock) {
                    Ok(n) => n,
                    Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                        self.totals.refused += 1;
                        continue;
                    }
                    Err(_) => break,
                };
                if n == 0 {
                    break;
                }
                let at = self.protocol.arrival(shared.now_ns());
                tracker.sweep(at.mono_ns);
                for j in 0..n {
                    let (d, truncated) = self.batch.datagram(j);
                    self.totals.echoes += 1;
                    let phase_of = |seq| shared.phase_of(flow.id, seq);
                    let reply =
                        match self
                            .protocol
                            .check(d, truncated, flow.id, tracker.swept(), phase_of)
                        {
                            Ok(r) => r,
                            Err(Reject::Invalid) => {
                                self.totals.invalid += 1;
                                continue;
                            }
                            Err(Reject::Corrupt) => {
                                self.totals.corrupt += 1;
                                continue;
                            }
                        };
                    match tracker.on_echo(reply.seq, reply.phase) {
                        Echo::Received { .. } if reply.phase == Phase::Measured => {
                            latency.record(&reply.sample, at);
                        }
                        Echo::Unknown => self.totals.corrupt += 1,
                        _ => {}
                    }
                }
            }
        }
    }

    fn finish(mut self, trackers: &[Tracker]) -> Totals {
        for t in trackers {
            for p in [Phase::Warmup, Phase::Measured] {
                self.totals.counts[p as usize].add(t.counts(p));
            }
        }
        self.totals
    }
}

fn publish(trackers: &[Tracker], live: &Live) {
    let (mut received, mut lost) = (0, 0);
    for t in trackers {
        for p in [Phase::Warmup, Phase::Measured] {
            received += t.counts(p).received;
            lost += t.counts(p).lost;
        }
    }
    live.received.store(received, Relaxed);
    live.lost.store(lost, Relaxed);
}

/// How long a receiving loop may wait: until the earliest deadline, at most `cap`.
fn wait_for(trackers: &[Tracker], now: u64, cap: Duration) -> Duration {
    trackers
        .iter()
        .filter_map(|t| t.next_deadline())
        .min()
        .map_or(cap, |d| {
            Duration::from_nanos(d.saturating_sub(now)).min(cap)
        })
}

/// Closed loop: keeps `window` datagrams in flight on every flow of the group.
fn closed_loop(
    cfg: &Config,
    shared: &Shared,
    flows: Vec<Flow>,
    window: u32,
    live: &Live,
) -> Totals {
    let mut trackers: Vec<Tracker> = flows.iter().map(|_| cfg.tracker()).collect();
    let mut next = vec![0u64; flows.len()];
    let mut prober = Prober::new(cfg);
    let mut rx = Collector::new(cfg, &flows);
    let mut sent_total = 0;
    loop {
        let state = shared.state.load(Relaxed);
        if state == ABORT {
            trackers.iter_mut().for_each(|t| {
                t.finish();
            });
            break;
        }
        let now = shared.now_ns();
        let sending = state == RUNNING && now < cfg.end_ns();
        if sending {
            let phase = cfg.phase_at(now);
            for ((flow, t), next) in flows.iter().zip(&mut trackers).zip(&mut next) {
                let free = u64::from(window).saturating_sub(t.in_flight()).min(room(
                    t.swept(),
                    *next,
                    t.cap(),
                ));
                if free == 0 {
                    continue;
                }
                let sent_ns = shared.now_ns();
                match prober.send(flow, *next, free as usize, phase, sent_ns, shared) {
                    Ok(k) => {
                        if k > 0 {
                            *next += k as u64;
                            t.on_sent(Record {
                                end: *next,
                                sent_ns,
                                phase,
                            });
                            sent_total += k as u64;
                        }
                        if (k as u64) < free.min(prober.max as u64) {
                            rx.totals.send_stalls += 1;
                        }
                    }
                    Err(e) => rx.totals.count_send_error(&e),
                }
            }
            live.sent.store(sent_total, Relaxed);
        } else if trackers.iter().all(Tracker::resolved) {
            break;
        }
        let now = shared.now_ns();
        let mut cap = Duration::from_millis(10);
        if sending {
            cap = cap.min(Duration::from_nanos(cfg.end_ns().saturating_sub(now)));
        }
        // --busy-poll: look without sleeping, every turn.
        let wait = if cfg.busy_poll {
            Duration::ZERO
        } else {
            wait_for(&trackers, now, cap)
        };
        rx.poll_and_read(&flows, &mut trackers, wait, shared, live);
        let now = shared.now_ns();
        trackers.iter_mut().for_each(|t| {
            t.sweep(now);
        });
        publish(&trackers, live);
    }
    publish(&trackers, live);
    rx.finish(&trackers)
}

/// Open loop, sending half: paces batches over the group's flows round-robin
/// at `pps` (None: as fast as the kernel takes them).
fn open_loop_send(
    cfg: &Config,
    shared: &Shared,
    flows: &[Flow],
    swept: &[AtomicU64],
    pps: Option<f64>,
    records: mpsc::Sender<(usize, Record)>,
    live: &Live,
) -> Totals {
    let mut totals = Totals::default();
    let mut prober = Prober::new(cfg);
    let mut next = vec![0u64; flows.len()];
    let cap = cfg.tracker_cap();
    // Pacing: `paced` datagrams are due `paced / pps` seconds after `anchor`.
    let mut anchor = shared.now_ns();
    let mut paced: u64 = 0;
    let mut sent_total = 0;
    let mut rr = 0;
    let mut blocked = 0;
    loop {
        if shared.state.load(Relaxed) != RUNNING {
            break;
        }
        let now = shared.now_ns();
        if now >= cfg.end_ns() {
            break;
        }
        let mut n = prober.max as u64;
        if let Some(pps) = pps {
            let due = ((now - anchor) as f64 * pps / 1e9) as u64;
            // After a stall, do not burst more than a millisecond's worth to catch up.
            let burst = ((pps / 1000.0) as u64).max(n);
            if due > paced + burst {
                paced = due - burst;
            }
            if due <= paced {
                let next_due = anchor + ((paced + 1) as f64 * 1e9 / pps) as u64;
                pace_wait(next_due.min(cfg.end_ns()).saturating_sub(now));
                continue;
            }
            n = n.min(due - paced);
            if paced > 1 << 40 {
                // Keep the float arithmetic exact over long runs.
                anchor = now;
                paced = 0;
                continue;
            }
        }
        let f = rr;
        rr = (rr + 1) % flows.len();
        let free = room(swept[f].load(Relaxed), next[f], cap);
        if free == 0 {
            totals.tracking_stalls += 1;
            blocked += 1;
            if blocked >= flows.len() {
                // Every flow is half a ring ahead: let the receiver catch up.
                thread::sleep(Duration::from_micros(100));
                blocked = 0;
            }
            continue;
        }
        blocked = 0;
        let n = n.min(free) as usize;
        let phase = cfg.phase_at(now);
        let sent_ns = shared.now_ns();
        match prober.send(&flows[f], next[f], n, phase, sent_ns, shared) {
            Ok(k) => {
                if k > 0 {
                    next[f] += k as u64;
                    paced += k as u64;
                    sent_total += k as u64;
                    live.sent.store(sent_total, Relaxed);
                    // The receiver outlives every sender of its group unless aborted.
                    let _ = records.send((
                        f,
                        Record {
                            end: next[f],
                            sent_ns,
                            phase,
                        },
                    ));
                }
                if k < n {
                    totals.send_stalls += 1;
                    thread::sleep(Duration::from_micros(20));
                }
            }
            Err(e) => {
                totals.count_send_error(&e);
                thread::sleep(Duration::from_micros(20));
            }
        }
    }
    totals
}

/// Sleeps most of `ns`, spinning the last stretch for precision.
fn pace_wait(ns: u64) {
    if ns > 200_000 {
        thread::sleep(Duration::from_nanos(ns - 100_000));
    } else if ns > 20_000 {
        thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// Open loop, receiving half: owns the group's trackers.
fn open_loop_receive(
    cfg: &Config,
    shared: &Shared,
    flows: &[Flow],
    swept: &[AtomicU64],
    records: mpsc::Receiver<(usize, Record)>,
    live: &Live,
) -> Totals {
    let mut trackers: Vec<Tracker> = flows.iter().map(|_| cfg.tracker()).collect();
    let mut rx = Collector::new(cfg, flows);
    let mut senders_done = false;
    loop {
        loop {
            match records.try_recv() {
                Ok((f, r)) => trackers[f].on_sent(r),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    senders_done = true;
                    break;
                }
            }
        }
        if shared.state.load(Relaxed) == ABORT {
            trackers.iter_mut().for_each(|t| {
                t.finish();
            });
            break;
        }
        let now = shared.now_ns();
        for (t, s) in trackers.iter_mut().zip(swept) {
            t.sweep(now);
            s.store(t.swept(), Relaxed);
        }
        publish(&trackers, live);
        if senders_done && trackers.iter().all(Tracker::resolved) {
            break;
        }
        let wait = if cfg.busy_poll {
            Duration::ZERO
        } else {
            wait_for(
                &trackers,
                now,
                Duration::from_millis(if senders_done { 50 } else { 2 }),
            )
        };
        rx.poll_and_read(flows, &mut trackers, wait, shared, live);
    }
    publish(&trackers, live);
    rx.finish(&trackers)
}
