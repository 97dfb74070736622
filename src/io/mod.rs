//! The two receive paths and what they share.
//!
//! Both backends turn each received datagram into a [`Received`] view and
//! hand it to [`Engine::on_datagram`], which counts it, asks
//! [`crate::reflect`] for the reply and queues it in the socket's
//! [`tx::TxBatch`]. The backends differ only in how bytes arrive.

pub(crate) mod mmsg;
pub mod tx;
pub(crate) mod uring;

use std::{
    io,
    os::fd::{AsRawFd, OwnedFd, RawFd},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use hdrhistogram::Histogram;

use crate::{
    live::LiveSlot,
    policy::{Destination, Policy},
    reflect::{self, Mode, NoReply, RxMeta, Verdict},
    stats::{record_latency, Counters, SharedCounters},
    sys::{clock::realtime_ns, cmsg, event::Event, sockaddr, socket},
};

/// The workers' stop request: a flag read between batches, and an eventfd
/// that wakes a worker blocked in its wait. Workers wait with no timeout, so
/// an idle or busy worker arms no timer per wakeup.
#[derive(Debug)]
pub struct Stop {
    raised: AtomicBool,
    event: Event,
}

impl Stop {
    pub fn new() -> io::Result<Arc<Stop>> {
        Ok(Arc::new(Stop {
            raised: AtomicBool::new(false),
            event: Event::new()?,
        }))
    }

    /// Asks every worker to stop: sets the flag, then wakes them.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        // Cannot fail: an eventfd write fails only when the counter would
        // pass 2^64 - 2, and it is written once per raise.
        let _ = self.event.raise();
    }

    #[inline]
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// The eventfd that becomes readable on `raise`.
    pub fn fd(&self) -> RawFd {
        self.event.as_raw_fd()
    }
}

/// Sizes every backend needs.
#[derive(Debug, Clone, Copy)]
pub struct IoConfig {
    /// Largest sendmmsg (and recvmmsg).
    pub batch: usize,
    /// Largest payload answered.
    pub max_datagram: usize,
    /// Provided buffers per worker (uring) or receive slots per socket (mmsg).
    pub buffers: u16,
    /// Send runs of alike replies to one peer as UDP GSO trains.
    pub gso: bool,
    /// The sockets have UDP_GRO on: a buffer may hold a train, so receive
    /// buffers hold [`GRO_MAX_BYTES`] of payload.
    pub gro: bool,
    /// Never sleep: poll for completions (or datagrams) in a loop.
    pub busy_poll: bool,
    /// uring: io_uring min-wait, microseconds, for each wait.
    pub coalesce_us: Option<u32>,
}

/// Most payload bytes one GRO read may hold: a train is at most one
/// 64 KiB skb (UDP's length field; `udp_gro_receive` stops there).
pub const GRO_MAX_BYTES: usize = 65_535;

impl IoConfig {
    /// Payload bytes of one receive buffer: a datagram of `max_datagram`,
    /// or with GRO a whole train.
    pub fn rx_payload_len(&self) -> usize {
        if self.gro {
            self.max_datagram.max(GRO_MAX_BYTES)
        } else {
            self.max_datagram
        }
    }
}

/// One listening socket of a worker.
pub struct Socket {
    pub fd: OwnedFd,
    pub mode: Mode,
    /// Last SO_RXQ_OVFL value seen: the kernel's cumulative drop count.
    ovfl_seen: u32,
}

impl Socket {
    pub fn new(fd: OwnedFd, mode: Mode) -> Self {
        Socket {
            fd,
            mode,
            ovfl_seen: 0,
        }
    }
}

/// One received datagram, as laid out in a receive buffer: the view both
/// backends hand to [`Engine::on_datagram`], defined once with the slot
/// layout it describes.
pub use crate::sys::mmsg::Slot as Received;

/// A worker's sockets, counters, latency histogram and reply batches.
pub struct Engine {
    pub sockets: Vec<Socket>,
    tx: Vec<tx::TxBatch>,
    pub counters: Counters,
    pub latency: Histogram<u64>,
    shared: Arc<SharedCounters>,
    live: Arc<LiveSlot>,
    pub stop: Arc<Stop>,
    policy: Policy,
    /// Longer datagrams are counted as truncated, not answered.
    max_datagram: usize,
}

impl Engine {
    pub fn new(
        sockets: Vec<Socket>,
        cfg: &IoConfig,
        shared: Arc<SharedCounters>,
        live: Arc<LiveSlot>,
        stop: Arc<Stop>,
        policy: Policy,
    ) -> Self {
        let tx = sockets
            .iter()
            .map(|_| tx::TxBatch::new(cfg.batch, cfg.gso))
            .collect();
        Engine {
            sockets,
            tx,
            counters: Counters::default(),
            latency: crate::stats::new_latency_histogram(),
            shared,
            live,
            stop,
            policy,
            max_datagram: cfg.max_datagram,
        }
    }

    #[inline]
    pub fn should_stop(&self) -> bool {
        self.stop.is_raised()
    }

    /// Counts a datagram, or each datagram of a GRO train, and queues the
    /// replies. Returns true when the socket's batch is full: the caller
    /// must `flush` before the next one.
    ///
    /// # Safety
    /// A reply points into `rx.payload` (it is not copied): that memory must
    /// stay allocated and untouched until the next [`Engine::flush`] (only
    /// then may a receive buffer be recycled or a slot reused).
    #[inline]
    pub unsafe fn on_datagram(&mut self, sock: usize, rx: Received<'_>) -> bool {
        let control = cmsg::decode(rx.control);
        let s = &mut self.sockets[sock];
        if let Some(total) = control.rxq_ovfl {
            self.counters.rxq_overflow += u64::from(total.wrapping_sub(s.ovfl_seen));
            s.ovfl_seen = total;
        }
        // A GRO train: datagrams of `segment` bytes, the last maybe shorter.
        let segment = control
            .gro_segment
            .map(usize::from)
            .filter(|&g| g < rx.wire_len);
        let (count, longest) = match segment {
            Some(g) => (rx.wire_len.div_ceil(g), g),
            None => (1, rx.wire_len),
        };
        let c = &mut self.counters;
        c.rx_trains += u64::from(segment.is_some());
        c.rx_packets += count as u64;
        c.rx_bytes += rx.wire_len as u64;
        if rx.truncated || longest > self.max_datagram {
            c.truncated += count as u64;
            return false;
        }
        if rx.control_truncated {
            // Its pktinfo may be lost: never answer from a guessed address.
            c.no_reply[NoReply::ControlTruncated as usize] += count as u64;
            warn_control_truncated();
            return false;
        }
        // The source policy, before any reply is built (src/policy.rs), with
        // the reflector ports the runtime last swapped in (one relaxed load).
        self.policy.refresh();
        let dst = match control.pktinfo {
            Some(cmsg::PktInfo::V4 { spec_dst }) => Destination::V4 {
                header: control.v4_header_dst.unwrap_or(spec_dst),
                spec_dst,
            },
            Some(cmsg::PktInfo::V6 { addr, .. }) => Destination::V6 { header: addr },
            None => Destination::Unknown,
        };
        let source = sockaddr::from_bytes(rx.name);
        // A rate limit counts a train's datagrams one by one; otherwise they
        // share one source and destination, so one verdict holds for all.
        let rate_limited = self.policy.needs_clock();
        let now_ns = if rate_limited {
            control.rx_time_ns.unwrap_or_else(realtime_ns)
        } else {
            0
        };
        if segment.is_none() || !rate_limited {
            if let Some(reason) = self.policy.check(source, dst, now_ns) {
                c.no_reply[reason as usize] += count as u64;
                return false;
            }
        }
        let meta = RxMeta {
            rx_time_ns: control.rx_time_ns,
            ttl: control.ttl,
        };
        let Some(g) = segment else {
            // A caller that reads more datagrams than a batch holds (mmsg
            // slots after a train filled part of the batch) gets room here.
            if self.tx[sock].is_full() {
                self.flush_socket(sock);
            }
            // SAFETY: forwarded to our caller (see `# Safety`).
            unsafe { self.reflect_one(sock, rx.name, rx.payload, rx.len, &meta, &control) };
            return self.tx[sock].is_full();
        };
        // Each datagram of the train in turn, in place. A mode may lengthen
        // only the last one's reply (the others end where the next begins);
        // same-length replies to one peer leave as a train again.
        let (mut rest, mut left) = (rx.payload, rx.len);
        while left > 0 {
            let len = g.min(left);
            let (datagram, tail) = if len == left {
                (rest, &mut [][..])
            } else {
                rest.split_at_mut(g)
            };
            let refused = if rate_limited {
                self.policy.check(source, dst, now_ns)
            } else {
                None
            };
            if let Some(reason) = refused {
                self.counters.count_no_reply(reason);
            } else {
                if self.tx[sock].is_full() {
                    self.flush_socket(sock);
                }
                // SAFETY: forwarded to our caller (see `# Safety`): the
                // whole train stays untouched until the next flush (a
                // flush_socket on the way sends, it recycles nothing).
                unsafe { self.reflect_one(sock, rx.name, datagram, len, &meta, &control) };
            }
            rest = tail;
            left -= len;
        }
        self.tx[sock].is_full()
    }

    /// Asks the socket's mode for the reply to `payload[..len]` and queues
    /// it, or counts why there is none. The batch must have room.
    ///
    /// # Safety
    /// As [`Engine::on_datagram`]: `payload` stays allocated and untouched
    /// until the next flush.
    #[inline]
    unsafe fn reflect_one(
        &mut self,
        sock: usize,
        name: &[u8],
        payload: &mut [u8],
        len: usize,
        meta: &RxMeta,
        control: &cmsg::RxControl,
    ) {
        match reflect::reflect(self.sockets[sock].mode, meta, payload, len) {
            Verdict::NoReply(reason) => {
                self.counters.count_no_reply(reason);
                if reason == NoReply::Discarded {
                    // Discard mode: latency up to the point the datagram is consumed.
                    if let Some(rx_ns) = control.rx_time_ns {
                        record_latency(&mut self.latency, rx_ns, realtime_ns());
                    }
                }
            }
            Verdict::Reply(n) => {
                let cap = payload.len();
                // SAFETY: forwarded to our caller (see `# Safety`): the
                // payload stays untouched until the next flush.
                unsafe {
                    self.tx[sock].push(
                        name,
                        &mut payload[..n.min(cap)],
                        control.pktinfo.as_ref(),
                        control.rx_time_ns.unwrap_or(0),
                    )
                };
            }
        }
    }

    /// Sends one socket's queued replies (counters are published at the
    /// next `flush`).
    fn flush_socket(&mut self, sock: usize) {
        let fd = self.sockets[sock].fd.as_raw_fd();
        self.tx[sock].flush(fd, &mut self.counters, &mut self.latency);
    }

    /// Sends every queued reply, then publishes the counters (and the
    /// latency, when the reporter asked for it).
    pub fn flush(&mut self) {
        for (batch, s) in self.tx.iter_mut().zip(&self.sockets) {
            if !batch.is_empty() {
                batch.flush(s.fd.as_raw_fd(), &mut self.counters, &mut self.latency);
            }
        }
        self.shared.publish(&self.counters);
        self.live.after_flush(&mut self.latency);
    }

    /// Reads each socket's drop counter one last time, so drops after the
    /// last datagram we saw are not missed.
    pub fn finish(&mut self) {
        self.flush();
        for s in &mut self.sockets {
            if let Ok(total) = socket::meminfo_drops(s.fd.as_raw_fd()) {
                self.counters.rxq_overflow += u64::from(total.wrapping_sub(s.ovfl_seen));
                s.ovfl_seen = total;
            }
        }
        self.shared.publish(&self.counters);
    }
}

/// Receive errors in a row that end a worker. Both backends follow it: a
/// burst of transient errors (ENOMEM, an error queued on the socket) is
/// not fatal; a socket that fails every time, with no datagram between, is.
const MAX_RX_ERRORS_IN_A_ROW: u32 = 1000;

/// Counts receive errors in a row, for [`MAX_RX_ERRORS_IN_A_ROW`].
#[derive(Debug, Default)]
pub(crate) struct RxErrors {
    in_a_row: u32,
}

impl RxErrors {
    /// A receive succeeded.
    #[inline]
    pub(crate) fn ok(&mut self) {
        self.in_a_row = 0;
    }

    /// A receive failed with `e`: an error only past the limit.
    pub(crate) fn failed(&mut self, e: io::Error) -> io::Result<()> {
        self.in_a_row += 1;
        if self.in_a_row > MAX_RX_ERRORS_IN_A_ROW {
            Err(e)
        } else {
            Ok(())
        }
    }
}

/// A backend's main loop: runs until the stop flag is set, then drains what
/// is already queued and returns.
pub type RunFn = fn(&mut Engine, &IoConfig) -> io::Result<()>;

/// Says once per process that control data was cut (the counter has each).
#[cold]
fn warn_control_truncated() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        eprintln!(
            "udp-reflector: the kernel cut a datagram's control data (MSG_CTRUNC); such datagrams are not answered (counted in no_reply_ctrunc)"
        )
    });
}

/// Reports a send error on stderr at most once a minute (the counters have
/// every one of them).
pub fn warn_tx_error(e: &io::Error) {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 60
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        eprintln!("udp-reflector: sendmmsg failed: {e} (counted in tx_errors; further errors are counted silently for a minute)");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::policy::{PolicyConfig, PortSet, SharedPorts};

    /// An engine with one echo socket (a loopback UDP socket of its own).
    fn engine() -> Engine {
        let cfg = IoConfig {
            batch: 8,
            max_datagram: 64,
            buffers: 8,
            gso: true,
            gro: true,
            busy_poll: false,
            coalesce_us: None,
        };
        engine_with(
            std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
            &cfg,
            Stop::new().unwrap(),
        )
    }

    /// An engine that echoes on `sock`, sized by `cfg`, stopped by `stop`.
    pub(crate) fn engine_with(
        sock: std::net::UdpSocket,
        cfg: &IoConfig,
        stop: Arc<Stop>,
    ) -> Engine {
        let policy = Policy::new(
            &PolicyConfig::default(),
            SharedPorts::new(PortSet::default(), PortSet::default()),
        );
        Engine::new(
            vec![Socket::new(OwnedFd::from(sock), Mode::Echo)],
            cfg,
            Arc::new(SharedCounters::default()),
            Arc::new(LiveSlot::default()),
            stop,
            policy,
        )
    }

    /// A sockaddr_in of 127.0.0.1:40000, as the kernel fills msg_name.
    fn peer() -> Vec<u8> {
        let mut b = vec![0u8; 16];
        b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        b[2..4].copy_from_slice(&40000u16.to_be_bytes());
        b[4..8].copy_from_slice(&[127, 0, 0, 1]);
        b
    }

    #[test]
    fn a_datagram_whose_control_data_was_cut_is_counted_not_answered() {
        let mut e = engine();
        let mut name = peer();
        let mut payload = *b"hello, reflector";
        let answered = |e: &mut Engine, name: &mut [u8], payload: &mut [u8], cut: bool| {
            let len = payload.len();
            // SAFETY: nothing is flushed; the batch is cleared below while
            // the payload is alive.
            unsafe {
                e.on_datagram(
                    0,
                    Received {
                        name,
                        control: &[],
                        payload,
                        len,
                        wire_len: len,
                        truncated: false,
                        control_truncated: cut,
                    },
                )
            };
            e.tx[0].len()
        };
        assert_eq!(answered(&mut e, &mut name, &mut payload, true), 0);
        let c = e.counters;
        assert_eq!(c.rx_packets, 1);
        assert_eq!(c.no_reply[NoReply::ControlTruncated as usize], 1);
        assert_eq!(c.outcomes(), c.rx_packets);
        // The same datagram with its control data whole is answered.
        assert_eq!(answered(&mut e, &mut name, &mut payload, false), 1);
        e.tx[0].clear();
    }

    /// A UDP_GRO control message saying "a train of `segment`-byte datagrams".
    fn gro_cmsg(segment: i32) -> Vec<u8> {
        let hdr = std::mem::size_of::<libc::cmsghdr>();
        let mut c = vec![0u8; cmsg::space(4)];
        c[..8].copy_from_slice(&(hdr + 4).to_ne_bytes());
        c[8..12].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
        c[12..16].copy_from_slice(&libc::UDP_GRO.to_ne_bytes());
        c[hdr..hdr + 4].copy_from_slice(&segment.to_ne_bytes());
        c
    }

    /// Hands the engine one read of `len` bytes with `control`.
    fn read(e: &mut Engine, control: &[u8], payload: &mut [u8], len: usize, cut: bool) {
        let mut name = peer();
        // SAFETY: each test flushes or clears the batch before its buffers go.
        unsafe {
            e.on_datagram(
                0,
                Received {
                    name: &mut name,
                    control,
                    payload,
                    len,
                    wire_len: len,
                    truncated: false,
                    control_truncated: cut,
                },
            )
        };
    }

    #[test]
    fn a_train_is_counted_and_answered_datagram_by_datagram() {
        let mut e = engine();
        let mut buf = [0u8; 64];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = i as u8;
        }
        // 10 + 10 + 5 bytes in one read.
        read(&mut e, &gro_cmsg(10), &mut buf, 25, false);
        let c = e.counters;
        assert_eq!((c.rx_packets, c.rx_bytes, c.rx_trains), (3, 25, 1));
        assert_eq!(e.tx[0].len(), 3, "one reply per datagram");
        e.tx[0].clear();

        // The engine's limit is 64 bytes: a train of two 70-byte datagrams
        // is truncated, twice.
        let mut big = [0u8; 140];
        read(&mut e, &gro_cmsg(70), &mut big, 140, false);
        let c = e.counters;
        assert_eq!((c.rx_packets, c.truncated, c.rx_trains), (5, 2, 2));
        assert_eq!(e.tx[0].len(), 0);

        // Cut control data: each datagram of the train is refused.
        read(&mut e, &gro_cmsg(10), &mut buf, 30, true);
        let c = e.counters;
        assert_eq!(c.no_reply[NoReply::ControlTruncated as usize], 3);
        assert_eq!(c.rx_packets, 8);
        assert_eq!(e.tx[0].len(), 0);
        // Every datagram in one outcome, but the first train's three
        // replies, cleared unsent above.
        assert_eq!(c.outcomes() + 3, c.rx_packets);
    }

    /// mmsg reads a batch's worth of slots and flushes after them all: a
    /// train that filled most of the batch, then single datagrams, must
    /// find room (this panicked in TxBatch::push under an overload soak).
    #[test]
    fn single_datagrams_after_a_train_find_room_in_the_batch() {
        let mut e = engine();
        let mut train = [7u8; 18];
        read(&mut e, &gro_cmsg(3), &mut train, 18, false); // 6 of 8
        let mut singles = [[1u8; 4]; 4];
        for p in &mut singles {
            read(&mut e, &[], p, 4, false);
        }
        let c = e.counters;
        assert_eq!(c.rx_packets, 10);
        assert_eq!(c.tx_packets + e.tx[0].len() as u64, 10, "{c:?}");
        e.flush();
        assert_eq!(e.counters.tx_packets, 10);
        assert_eq!(e.counters.outcomes(), e.counters.rx_packets);
    }

    #[test]
    fn a_train_longer_than_the_batch_is_sent_as_the_batch_fills() {
        let mut e = engine();
        // 20 datagrams of 3 bytes, batch of 8: two flushes inside, 4 left.
        let mut buf = [7u8; 60];
        read(&mut e, &gro_cmsg(3), &mut buf, 60, false);
        assert_eq!(e.counters.rx_packets, 20);
        assert_eq!(e.counters.tx_packets, 16, "{:?}", e.counters);
        assert_eq!(e.tx[0].len(), 4);
        e.flush();
        assert_eq!(e.counters.tx_packets, 20);
    }

    /// `PROPTEST_CASES`, or 10^4.
    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000)
    }

    thread_local! {
        /// One engine per mode for every case of a property (an engine's
        /// latency histogram is large to allocate).
        static ENGINES: std::cell::RefCell<Vec<(Mode, Engine)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }

    fn with_engine<T>(mode: Mode, f: impl FnOnce(&mut Engine) -> T) -> T {
        ENGINES.with_borrow_mut(|engines| {
            if !engines.iter().any(|(m, _)| *m == mode) {
                let mut e = engine();
                e.sockets[0].mode = mode;
                engines.push((mode, e));
            }
            let (_, e) = engines
                .iter_mut()
                .find(|(m, _)| *m == mode)
                .expect("made above");
            f(e)
        })
    }

    /// One received datagram, as arbitrary as the kernel could make it and
    /// then some: any peer bytes, any control bytes, any payload, cut or not.
    #[derive(Debug, Clone)]
    struct RandomDatagram {
        name: Vec<u8>,
        control: Vec<u8>,
        payload: Vec<u8>,
        spare: usize,
        wire_extra: usize,
        truncated: bool,
        control_truncated: bool,
    }

    fn arbitrary_datagram() -> impl proptest::strategy::Strategy<Value = RandomDatagram> {
        use proptest::{collection::vec, prelude::*};
        let v4 = |ip: [u8; 4], port: u16| {
            let mut b = vec![0u8; 16];
            b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&port.to_be_bytes());
            b[4..8].copy_from_slice(&ip);
            b
        };
        let name = prop_oneof![
            vec(any::<u8>(), 0..40),
            // Only addresses a test may send to, and those the policy refuses.
            (
                proptest::sample::select(vec![
                    [127, 0, 0, 1],
                    [198, 51, 100, 7],
                    [203, 0, 113, 9],
                    [0, 0, 0, 0],
                    [255, 255, 255, 255],
                    [224, 0, 0, 1],
                ]),
                any::<u16>()
            )
                .prop_map(move |(ip, p)| v4(ip, p)),
            (any::<u16>()).prop_map(move |p| v4([127, 0, 0, 1], p)),
        ];
        (
            name,
            vec(any::<u8>(), 0..160),
            vec(any::<u8>(), 0..120),
            0usize..64,
            0usize..3,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(name, control, payload, spare, wire_extra, truncated, control_truncated)| {
                    RandomDatagram {
                        name,
                        control,
                        payload,
                        spare,
                        wire_extra,
                        truncated,
                        control_truncated,
                    }
                },
            )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(cases()))]

        /// RandomDatagram datagrams with arbitrary control bytes, in every mode:
        /// never a panic, and every datagram ends in exactly one outcome
        /// (queued replies stand for tx until the flush), its bytes counted.
        #[test]
        fn every_datagram_ends_in_one_outcome(
            mode in proptest::sample::select(
                vec![Mode::Echo, Mode::Discard, Mode::Sockperf, Mode::Stamp]
            ),
            batch in proptest::collection::vec(arbitrary_datagram(), 1..6),
        ) {
            let mut bufs: Vec<RandomDatagram> = batch.clone();
            let mut wire = 0u64;
            let (c, queued) = with_engine(mode, |e| {
                let before = e.counters;
                for d in &mut bufs {
                    let len = d.payload.len();
                    d.payload.resize(len + d.spare, 0xa5);
                    let wire_len = len + if d.truncated { d.wire_extra + 1 } else { 0 };
                    wire += wire_len as u64;
                    // SAFETY: nothing is flushed; the batch is cleared below
                    // while every payload is alive.
                    unsafe {
                        e.on_datagram(
                            0,
                            Received {
                                name: &mut d.name,
                                control: &d.control,
                                payload: &mut d.payload,
                                len,
                                wire_len,
                                truncated: d.truncated,
                                control_truncated: d.control_truncated,
                            },
                        )
                    };
                }
                let queued = e.tx[0].len() as u64;
                e.tx[0].clear();
                (e.counters.since(&before), queued)
            });
            proptest::prop_assert_eq!(c.rx_packets, batch.len() as u64);
            proptest::prop_assert_eq!(c.rx_bytes, wire);
            let outcomes =
                queued + c.tx_dropped + c.tx_errors + c.truncated + c.no_reply_total();
            proptest::prop_assert_eq!(c.rx_packets, outcomes);
        }
    }
}
