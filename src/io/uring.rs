//! io_uring backend: one multishot recvmsg per socket over a provided buffer
//! ring shared by the worker's sockets; replies by one sendmmsg per batch.
//!
//! Each completion's buffer holds, in order (see `io_uring_recvmsg_out` in
//! include/uapi/linux/io_uring.h and io_recvmsg_multishot in io_uring/net.c):
//!
//! ```text
//! | recvmsg_out 16 | name NAME_LEN | control RX_CONTROL_LEN | payload (a datagram, or with GRO a train) |
//! ```
//!
//! The reply points straight into that buffer (UDP copies it before
//! sendmmsg returns), and the buffer is recycled after the flush.

use std::{io, os::fd::AsRawFd, time::Duration};

use io_uring::{cqueue, opcode, types, IoUring};

use super::{Engine, IoConfig, Received};
use crate::sys::{
    bufring::{BufId, BufRing},
    cmsg::RX_CONTROL_LEN,
    sockaddr::NAME_LEN,
    socket,
};

/// Buffer group id of the worker's buffer ring.
const BGID: u16 = 0;
/// sizeof(struct io_uring_recvmsg_out).
const NAME_OFF: usize = 16;
const CONTROL_OFF: usize = NAME_OFF + NAME_LEN;
const PAYLOAD_OFF: usize = CONTROL_OFF + RX_CONTROL_LEN;

/// The longest wait when the stop eventfd cannot be watched (never seen):
/// bounds how late a stop is noticed. Normal waits have no timeout.
const FALLBACK_WAIT: Duration = Duration::from_millis(100);
/// io_uring_enter's flag to reap completions (include/uapi/linux/io_uring.h).
const IORING_ENTER_GETEVENTS: u32 = 1;
/// NAPI busy-poll time per wait with --busy-poll, microseconds (the value
/// the kernel's documentation suggests for SO_BUSY_POLL).
const NAPI_BUSY_POLL_USEC: u32 = 50;

/// Longest drain of already-queued datagrams after a stop.
const DRAIN_LIMIT: Duration = Duration::from_millis(300);

/// Longest wait for the last completions of the cancelled requests at
/// the stop (they come at once; this only bounds a kernel that misbehaves).
const CANCEL_LIMIT: Duration = Duration::from_millis(200);

/// Which request a CQE belongs to: a socket's multishot receive (user data
/// is the socket index), the poll on the stop eventfd, or the final cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Recv { sock: usize },
    Stop,
    Cancel,
}

impl Token {
    fn encode(self) -> u64 {
        match self {
            Token::Recv { sock } => sock as u64,
            Token::Stop => u64::MAX,
            Token::Cancel => u64::MAX - 1,
        }
    }

    fn decode(v: u64) -> Token {
        match v {
            u64::MAX => Token::Stop,
            v if v == u64::MAX - 1 => Token::Cancel,
            sock => Token::Recv {
                sock: sock as usize,
            },
        }
    }
}

/// Submission queue entries for `sockets` multishot receives: one re-arm
/// per socket can be due in one turn (when the buffer ring runs dry, every
/// receive ends together), plus the stop poll and the final cancel.
fn sq_entries(sockets: usize) -> u32 {
    ((sockets + 2).next_power_of_two() as u32).max(8)
}

/// Where the loop is: serving; draining what was already queued after the
/// stop (since when); or waiting for the cancelled receives to end (since
/// when).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serve,
    Drain(std::time::Instant),
    Cancel(std::time::Instant),
}

/// Pushes `sqe`; if the queue is full, submits what it holds (the kernel
/// takes them all: the ring is set up with SUBMIT_ALL) and tries again.
/// False only if the queue stays full: the caller tries again later.
///
/// # Safety
/// Every buffer, descriptor and structure `sqe` refers to must stay valid
/// until its request has completed (for a multishot request: its last
/// completion, or the ring's teardown).
unsafe fn push(
    submitter: &io_uring::Submitter<'_>,
    sq: &mut io_uring::SubmissionQueue<'_>,
    sqe: &io_uring::squeue::Entry,
) -> io::Result<bool> {
    for _ in 0..2 {
        // SAFETY: forwarded to the caller, see `# Safety`.
        if unsafe { sq.push(sqe) }.is_ok() {
            return Ok(true);
        }
        sq.sync();
        match submitter.submit() {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY)) => {}
            Err(e) => return Err(e),
        }
        sq.sync();
    }
    Ok(false)
}

/// The bytes of one provided buffer a datagram occupies.
pub fn buffer_size(max_datagram: usize) -> usize {
    PAYLOAD_OFF + max_datagram
}

/// How completions reach the ring, cheapest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RingMode {
    /// SINGLE_ISSUER + DEFER_TASKRUN (+ COOP_TASKRUN): completions only
    /// inside our own waits (Linux >= 6.1).
    DeferTaskrun,
    /// COOP_TASKRUN: no interrupt to post completions.
    CoopTaskrun,
    /// Neither.
    Plain,
}

impl RingMode {
    const ALL: [RingMode; 3] = [
        RingMode::DeferTaskrun,
        RingMode::CoopTaskrun,
        RingMode::Plain,
    ];
}

/// Builds a ring for the calling thread, with the cheapest completion mode
/// this kernel offers: SINGLE_ISSUER + DEFER_TASKRUN, else COOP_TASKRUN,
/// else plain.
pub fn build_ring(sq_entries: u32, cq_entries: u32) -> io::Result<IoUring> {
    build_ring_of(&RingMode::ALL, sq_entries, cq_entries)
}

/// Builds a ring with the first of `modes` this kernel accepts.
fn build_ring_of(modes: &[RingMode], sq_entries: u32, cq_entries: u32) -> io::Result<IoUring> {
    let mut last = io::Error::from_raw_os_error(libc::EINVAL);
    for &mode in modes {
        let mut b = IoUring::builder();
        b.setup_cqsize(cq_entries).setup_submit_all();
        match mode {
            RingMode::DeferTaskrun => {
                b.setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_coop_taskrun();
            }
            RingMode::CoopTaskrun => {
                b.setup_coop_taskrun();
            }
            RingMode::Plain => {}
        }
        match b.build(sq_entries) {
            Ok(ring) => return Ok(ring),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

fn recv_template() -> Box<libc::msghdr> {
    // SAFETY: msghdr is a plain C struct; all-zero is valid.
    let mut m: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
    m.msg_namelen = NAME_LEN as libc::socklen_t;
    m.msg_controllen = RX_CONTROL_LEN as _;
    m
}

/// Checks that this kernel lets us use io_uring the way the backend does:
/// a ring, a provided buffer ring and a multishot recvmsg that completes.
/// Runs on a private socketpair: no traffic on any network.
pub fn probe() -> io::Result<()> {
    let (rx_fd, tx_fd) = socket::socketpair_dgram()?;
    let bufs = BufRing::new(2, buffer_size(64))?;
    let msghdr = recv_template();
    let mut ring = build_ring(4, 8)?;
    // SAFETY: `bufs` outlives the ring (declared before it, dropped after).
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(bufs.ring_addr(), bufs.entries(), BGID, 0)?
    };
    let sqe = opcode::RecvMsgMulti::new(types::Fd(rx_fd.as_raw_fd()), &*msghdr, BGID).build();
    // SAFETY: `msghdr` and the buffers outlive the request (the ring is dropped first).
    unsafe {
        ring.submission()
            .push(&sqe)
            .map_err(|_| io::Error::from_raw_os_error(libc::EBUSY))?
    };
    ring.submit()?;
    socket::send_byte(&tx_fd)?;
    let ts = types::Timespec::from(Duration::from_secs(1));
    match ring
        .submitter()
        .submit_with_args(1, &types::SubmitArgs::new().timespec(&ts))
    {
        Ok(_) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME) | Some(libc::EINTR)) => {}
        Err(e) => return Err(e),
    }
    let cqe = ring
        .completion()
        .next()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ETIME))?;
    if cqe.result() < 0 {
        return Err(io::Error::from_raw_os_error(-cqe.result()));
    }
    if cqueue::buffer_select(cqe.flags()).is_none() {
        // The datagram must have landed in a provided buffer.
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(())
}

/// Runs the worker's receive loop until the engine says stop, then drains.
///
/// Each turn: one `io_uring_enter` that waits for at least one completion
/// (with no timeout: the stop eventfd's poll is what wakes an idle worker),
/// then every completion is reflected and the replies leave by sendmmsg.
pub fn run(engine: &mut Engine, cfg: &IoConfig) -> io::Result<()> {
    run_on(&RingMode::ALL, engine, cfg)
}

/// [`run`] on a ring of the first of `modes` this kernel accepts.
fn run_on(modes: &[RingMode], engine: &mut Engine, cfg: &IoConfig) -> io::Result<()> {
    let buf_size = buffer_size(cfg.rx_payload_len());
    // Declared before the ring so they are dropped after it: the kernel may
    // touch both until the ring is gone.
    let mut bufs = BufRing::new(cfg.buffers, buf_size)?;
    let msghdr = recv_template();
    let nsock = engine.sockets.len();
    let cq_entries = (u32::from(cfg.buffers) * 2)
        .max(256)
        .max(4 * sq_entries(nsock));
    let mut ring = build_ring_of(modes, sq_entries(nsock), cq_entries)?;
    let coalesce_us = match cfg.coalesce_us {
        Some(_) if !ring.params().is_feature_min_timeout() => {
            eprintln!("udp-reflector: --coalesce-us: this kernel has no io_uring min-wait (Linux >= 6.12); waiting without it");
            None
        }
        c => c,
    };
    let (mut submitter, mut sq, mut cq) = ring.split();
    // SAFETY: `bufs` stays mapped until after the ring is dropped (see above).
    unsafe { submitter.register_buf_ring_with_flags(bufs.ring_addr(), bufs.entries(), BGID, 0)? };
    // Saves a file-table lookup per io_uring_enter; optional (5.18+).
    let _ = submitter.register_ring_fd();
    if cfg.busy_poll {
        // NAPI busy polling of the devices our sockets receive from (Linux
        // >= 6.9): it matters on NICs, not on loopback. Optional: an older
        // kernel refuses it (EINVAL), and workers still poll completions.
        let mut napi = types::Napi::new()
            .set_busy_poll_timeout(NAPI_BUSY_POLL_USEC)
            .set_prefer_busy_poll(true);
        let _ = submitter.register_napi(&mut napi);
    }

    let stop_poll = opcode::PollAdd::new(types::Fd(engine.stop.fd()), libc::POLLIN as u32)
        .build()
        .user_data(Token::Stop.encode());
    // SAFETY: the eventfd is owned by `engine.stop`, which outlives the ring.
    let mut stop_watched = unsafe { push(&submitter, &mut sq, &stop_poll)? };

    let mut armed = vec![false; nsock];
    let mut rx_errors = super::RxErrors::default();
    let mut pending: Vec<BufId> = Vec::with_capacity(cfg.buffers as usize);
    let fallback_ts = types::Timespec::from(FALLBACK_WAIT);
    let drain_ts = types::Timespec::from(Duration::from_millis(1));
    let mut phase = Phase::Serve;
    let mut cancel_done = false;

    loop {
        if !matches!(phase, Phase::Cancel(_)) {
            for (sock, is_armed) in armed.iter_mut().enumerate() {
                if !*is_armed {
                    let fd = types::Fd(engine.sockets[sock].fd.as_raw_fd());
                    // MSG_TRUNC: a datagram too large for its buffer still reports
                    // its full length (counted in rx_bytes, then as truncated).
                    let sqe = opcode::RecvMsgMulti::new(fd, &*msghdr, BGID)
                        .flags(libc::MSG_TRUNC as u32)
                        .build()
                        .user_data(Token::Recv { sock }.encode());
                    // SAFETY: `msghdr`, the buffer ring and the socket
                    // outlive the ring. If the queue stays full, this
                    // socket is armed next turn.
                    if !unsafe { push(&submitter, &mut sq, &sqe)? } {
                        break;
                    }
                    *is_armed = true;
                }
            }
        }
        sq.sync();
        let waited = match (phase, stop_watched) {
            (Phase::Serve, _) if cfg.busy_poll => {
                // Never sleep: enter with GETEVENTS and min_complete 0, which
                // runs the deferred task work (DEFER_TASKRUN posts
                // completions only there) and returns at once.
                // SAFETY: no argument pointer; the flags are the kernel's.
                unsafe {
                    submitter.enter::<libc::sigset_t>(
                        sq.len() as u32,
                        0,
                        IORING_ENTER_GETEVENTS,
                        None,
                    )
                }
            }
            (Phase::Serve, true) => match coalesce_us {
                // Wait up to `us` for a batch of completions, then for one.
                Some(us) => submitter
                    .submit_with_args(cfg.batch, &types::SubmitArgs::new().min_wait_usec(us)),
                None => submitter.submit_and_wait(1),
            },
            (Phase::Serve, false) => {
                submitter.submit_with_args(1, &types::SubmitArgs::new().timespec(&fallback_ts))
            }
            (_, _) => submitter.submit_with_args(1, &types::SubmitArgs::new().timespec(&drain_ts)),
        };
        match waited {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }

        cq.sync();
        let mut seen = 0usize;
        for cqe in &mut cq {
            seen += 1;
            let (res, flags) = (cqe.result(), cqe.flags());
            let sock = match Token::decode(cqe.user_data()) {
                Token::Recv { sock } => sock,
                Token::Stop => {
                    // Readable means raised; an error means we cannot watch
                    // it, and waits fall back to a timeout.
                    stop_watched = res >= 0;
                    continue;
                }
                Token::Cancel => {
                    cancel_done = true;
                    if res < 0 && res != -libc::ENOENT {
                        // Nothing was cancelled: no further completion will
                        // say so; stop waiting for one.
                        armed.fill(false);
                    }
                    continue;
                }
            };
            if !cqueue::more(flags) {
                armed[sock] = false; // the multishot request ended: re-arm after recycling
            }
            if res < 0 {
                match -res {
                    libc::ENOBUFS => engine.counters.ring_stalls += 1,
                    libc::ECANCELED | libc::EINTR => {}
                    errno => rx_errors.failed(io::Error::from_raw_os_error(errno))?,
                }
                continue;
            }
            let Some(bid) = cqueue::buffer_select(flags) else {
                continue;
            };
            rx_errors.ok();
            // SAFETY: the kernel handed this buffer over in this completion,
            // of a receive that selects from `bufs`; each completion is seen once.
            let id = unsafe { bufs.claim(bid) };
            let buf = bufs.buf_mut(&id, buf_size);
            pending.push(id);
            let Ok(out) = types::RecvMsgOut::parse(&buf[..(res as usize).min(buf_size)], &msghdr)
            else {
                // Shorter than the fixed header areas: the kernel never does
                // this, but if it did the datagram is unreadable, and counted.
                engine.counters.rx_packets += 1;
                engine.counters.truncated += 1;
                continue;
            };
            let name_len = out.name_data().len();
            let control_len = out.control_data().len();
            let len = out.payload_data().len();
            let truncated = out.is_payload_truncated();
            let control_truncated = out.is_control_data_truncated();
            let wire_len = (out.incoming_payload_len() as usize).max(len);
            let (head, payload) = buf.split_at_mut(PAYLOAD_OFF);
            let (name_area, control_area) = head.split_at_mut(CONTROL_OFF);
            let rx = Received {
                name: &mut name_area[NAME_OFF..NAME_OFF + name_len],
                control: &control_area[..control_len],
                payload,
                len,
                wire_len,
                truncated,
                control_truncated,
            };
            // SAFETY: the buffer is recycled only after the next flush
            // (`pending` is drained right after each `engine.flush()`).
            if unsafe { engine.on_datagram(sock, rx) } {
                engine.flush();
                recycle(&mut bufs, &mut pending);
            }
        }
        cq.sync();
        engine.flush();
        recycle(&mut bufs, &mut pending);

        match phase {
            Phase::Serve if engine.should_stop() => {
                phase = Phase::Drain(std::time::Instant::now());
            }
            Phase::Drain(t) if seen == 0 || t.elapsed() > DRAIN_LIMIT => {
                // Stop exactly: cancel every receive, then reap until each
                // has ended (a completion without F_MORE), so that no
                // datagram lands in a buffer after the last count.
                let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                    .build()
                    .user_data(Token::Cancel.encode());
                // SAFETY: a cancel refers to no memory of ours.
                if !unsafe { push(&submitter, &mut sq, &cancel)? } {
                    break; // the queue stays full: end without the cancel
                }
                phase = Phase::Cancel(std::time::Instant::now());
            }
            Phase::Cancel(t)
                if (cancel_done && !armed.contains(&true)) || t.elapsed() > CANCEL_LIMIT =>
            {
                break
            }
            _ => {}
        }
    }
    engine.finish();
    let _ = submitter.unregister_buf_ring(BGID);
    drop((submitter, sq, cq));
    drop(ring);
    Ok(())
}

fn recycle(bufs: &mut BufRing, pending: &mut Vec<BufId>) {
    if pending.is_empty() {
        return;
    }
    for id in pending.drain(..) {
        bufs.recycle(id);
    }
    bufs.publish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_submission_queue_holds_every_socket_plus_the_stop_poll_and_the_cancel() {
        for n in [1, 2, 6, 7, 63, 64, 200] {
            assert!(sq_entries(n) as usize >= n + 2, "{n} sockets");
        }
    }

    #[test]
    fn a_full_submission_queue_is_submitted_and_pushed_again() {
        let mut ring = match build_ring(8, 64) {
            Ok(r) => r,
            // tests/common's `Need::Uring`, for this unit test.
            Err(e)
                if !std::env::var("UDP_REFLECTOR_REQUIRE")
                    .is_ok_and(|v| v.split(',').any(|n| n.trim() == "uring")) =>
            {
                eprintln!("SKIPPED (needs `uring`): io_uring unavailable here: {e}");
                return;
            }
            Err(e) => panic!("REQUIRED `uring` is missing (UDP_REFLECTOR_REQUIRE lists it): {e}"),
        };
        let (submitter, mut sq, mut cq) = ring.split();
        for i in 0..40u64 {
            let nop = opcode::Nop::new().build().user_data(i);
            // SAFETY: a no-op refers to no memory.
            let pushed = unsafe { push(&submitter, &mut sq, &nop) };
            assert!(pushed.unwrap(), "nop {i}");
        }
        sq.sync();
        submitter.submit().unwrap();
        let ts = types::Timespec::from(Duration::from_millis(100));
        let _ = submitter.submit_with_args(40, &types::SubmitArgs::new().timespec(&ts));
        cq.sync();
        let mut seen: Vec<u64> = cq.map(|c| c.user_data()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..40).collect::<Vec<u64>>());
    }

    /// Sum of the `dropped` column of /proc/net/softnet_stat (packets the
    /// loopback backlog refused before any socket saw them).
    fn softnet_dropped() -> u64 {
        std::fs::read_to_string("/proc/net/softnet_stat")
            .map(|s| {
                s.lines()
                    .filter_map(|l| l.split_whitespace().nth(1))
                    .filter_map(|h| u64::from_str_radix(h, 16).ok())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// On every ring mode, a stop under a flood loses nothing unseen: every
    /// datagram sent is counted (rx_packets), dropped by the socket (its
    /// drop counter), or still waiting in the socket queue after `run`
    /// returned. A receive left armed past the last count would pull
    /// datagrams into buffers that nobody counts.
    #[test]
    fn the_stop_is_exact_on_every_ring_mode() {
        if build_ring(8, 16).is_err() {
            let required = std::env::var("UDP_REFLECTOR_REQUIRE")
                .is_ok_and(|v| v.split(',').any(|n| n.trim() == "uring"));
            assert!(!required, "REQUIRED `uring` is missing");
            eprintln!("SKIPPED (needs `uring`): io_uring unavailable here");
            return;
        }
        let cfg = IoConfig {
            batch: 64,
            max_datagram: 64,
            buffers: 64,
            gso: true,
            gro: false,
            busy_poll: false,
            coalesce_us: None,
        };
        for mode in RingMode::ALL {
            let mut attempts = 0;
            loop {
                attempts += 1;
                let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let target = sock.local_addr().unwrap();
                let stop = crate::io::Stop::new().unwrap();
                let flooding = std::sync::atomic::AtomicBool::new(true);
                let softnet_before = softnet_dropped();
                let ((counters, fd), sent) = std::thread::scope(|s| {
                    let flooder = s.spawn(|| {
                        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                        let started = std::time::Instant::now();
                        let mut sent = 0u64;
                        // Bounded: until told, 5 s, or 2 M datagrams.
                        while flooding.load(std::sync::atomic::Ordering::Relaxed)
                            && started.elapsed() < Duration::from_secs(5)
                            && sent < 2_000_000
                        {
                            if c.send_to(&[7u8; 32], target).is_ok() {
                                sent += 1;
                            }
                        }
                        sent
                    });
                    let worker_stop = std::sync::Arc::clone(&stop);
                    // The engine (not Send) lives on the worker's thread; the
                    // socket comes back open, with what it still holds.
                    let worker = s.spawn(move || {
                        let mut engine = crate::io::tests::engine_with(sock, &cfg, worker_stop);
                        run_on(&[mode], &mut engine, &cfg)
                            .map(|()| (engine.counters, engine.sockets.pop().unwrap().fd))
                    });
                    std::thread::sleep(Duration::from_millis(150));
                    stop.raise();
                    let done = worker.join().unwrap().expect("the backend ran");
                    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
                    (done, flooder.join().unwrap())
                });
                let fd = fd.as_raw_fd();
                let mut left = 0u64;
                let mut buf = [0u8; 128];
                // SAFETY: recv into a live buffer of its length, without blocking.
                while unsafe {
                    libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT)
                } >= 0
                {
                    left += 1;
                }
                let drops = u64::from(socket::meminfo_drops(fd).unwrap());
                if softnet_dropped() != softnet_before && attempts < 3 {
                    continue; // lost before the socket: not this test's business
                }
                let c = &counters;
                assert!(c.rx_packets > 0, "{mode:?}: nothing was received");
                assert_eq!(
                    sent,
                    c.rx_packets + drops + left,
                    "{mode:?}: sent {sent}, counted {} + dropped {drops} + left {left}",
                    c.rx_packets
                );
                assert_eq!(c.outcomes(), c.rx_packets, "{mode:?}: {c:?}");
                break;
            }
        }
    }
}
