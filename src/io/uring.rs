//! io_uring backend: one multishot recvmsg per socket over a provided buffer
//! ring shared by the worker's sockets; replies by one sendmmsg per batch.
//!
//! Each completion's buffer holds, in order (see `io_uring_recvmsg_out` in
//! include/uapi/linux/io_uring.h and io_recvmsg_multishot in io_uring/net.c):
//!
//! ```text
//! | recvmsg_out 16 | name NAME_LEN | control RX_CONTROL_LEN | payload max_datagram |
//! ```
//!
//! The reply points straight into that buffer (UDP copies it before
//! sendmmsg returns), and the buffer is recycled after the flush.

use std::{io, os::fd::AsRawFd, time::Duration};

use io_uring::{cqueue, opcode, types, IoUring};

use super::{Engine, IoConfig, Received};
use crate::sys::{bufring::BufRing, cmsg::RX_CONTROL_LEN, sockaddr::NAME_LEN, socket};

/// Buffer group id of the worker's buffer ring.
const BGID: u16 = 0;
/// sizeof(struct io_uring_recvmsg_out).
const NAME_OFF: usize = 16;
const CONTROL_OFF: usize = NAME_OFF + NAME_LEN;
const PAYLOAD_OFF: usize = CONTROL_OFF + RX_CONTROL_LEN;

/// The longest wait when the stop eventfd cannot be watched (never seen):
/// bounds how late a stop is noticed. Normal waits have no timeout.
const FALLBACK_WAIT: Duration = Duration::from_millis(100);
/// Longest drain of already-queued datagrams after a stop.
const DRAIN_LIMIT: Duration = Duration::from_millis(300);

/// Which request a CQE belongs to: a socket's multishot receive (user data
/// is the socket index) or the poll on the stop eventfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Recv { sock: usize },
    Stop,
}

impl Token {
    fn encode(self) -> u64 {
        match self {
            Token::Recv { sock } => sock as u64,
            Token::Stop => u64::MAX,
        }
    }

    fn decode(v: u64) -> Token {
        match v {
            u64::MAX => Token::Stop,
            sock => Token::Recv {
                sock: sock as usize,
            },
        }
    }
}

/// The bytes of one provided buffer a datagram occupies.
pub fn buffer_size(max_datagram: usize) -> usize {
    PAYLOAD_OFF + max_datagram
}

/// Builds a ring for the calling thread, with the cheapest completion mode
/// this kernel offers: SINGLE_ISSUER + DEFER_TASKRUN, else COOP_TASKRUN,
/// else plain.
pub fn build_ring(sq_entries: u32, cq_entries: u32) -> io::Result<IoUring> {
    let attempts: [fn(&mut io_uring::Builder); 3] = [
        |b| {
            b.setup_single_issuer()
                .setup_defer_taskrun()
                .setup_coop_taskrun();
        },
        |b| {
            b.setup_coop_taskrun();
        },
        |_| {},
    ];
    let mut last = io::Error::from_raw_os_error(libc::EINVAL);
    for setup in attempts {
        let mut b = IoUring::builder();
        b.setup_cqsize(cq_entries).setup_submit_all();
        setup(&mut b);
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
    let buf_size = buffer_size(cfg.max_datagram);
    // Declared before the ring so they are dropped after it: the kernel may
    // touch both until the ring is gone.
    let mut bufs = BufRing::new(cfg.buffers, buf_size)?;
    let msghdr = recv_template();
    let cq_entries = (u32::from(cfg.buffers) * 2).max(256);
    let mut ring = build_ring(64, cq_entries)?;
    let (mut submitter, mut sq, mut cq) = ring.split();
    // SAFETY: `bufs` stays mapped until after the ring is dropped (see above).
    unsafe { submitter.register_buf_ring_with_flags(bufs.ring_addr(), bufs.entries(), BGID, 0)? };
    // Saves a file-table lookup per io_uring_enter; optional (5.18+).
    let _ = submitter.register_ring_fd();

    let stop_poll = opcode::PollAdd::new(types::Fd(engine.stop.fd()), libc::POLLIN as u32)
        .build()
        .user_data(Token::Stop.encode());
    // SAFETY: the eventfd is owned by `engine.stop`, which outlives the ring.
    unsafe { sq.push(&stop_poll) }.map_err(|_| io::Error::other("submission queue full"))?;
    let mut stop_watched = true;

    let nsock = engine.sockets.len();
    let mut armed = vec![false; nsock];
    let mut errors_in_a_row = 0u32;
    let mut pending: Vec<u16> = Vec::with_capacity(cfg.buffers as usize);
    let fallback_ts = types::Timespec::from(FALLBACK_WAIT);
    let drain_ts = types::Timespec::from(Duration::from_millis(1));
    let mut drain_started: Option<std::time::Instant> = None;

    loop {
        for (sock, is_armed) in armed.iter_mut().enumerate() {
            if !*is_armed {
                let fd = types::Fd(engine.sockets[sock].fd.as_raw_fd());
                // MSG_TRUNC: a datagram too large for its buffer still reports
                // its full length (counted in rx_bytes, then as truncated).
                let sqe = opcode::RecvMsgMulti::new(fd, &*msghdr, BGID)
                    .flags(libc::MSG_TRUNC as u32)
                    .build()
                    .user_data(Token::Recv { sock }.encode());
                // SAFETY: `msghdr` and the buffer ring outlive the ring.
                unsafe { sq.push(&sqe) }.map_err(|_| io::Error::other("submission queue full"))?;
                *is_armed = true;
            }
        }
        sq.sync();
        let waited = match (drain_started, stop_watched) {
            (None, true) => submitter.submit_and_wait(1),
            (None, false) => {
                submitter.submit_with_args(1, &types::SubmitArgs::new().timespec(&fallback_ts))
            }
            (Some(_), _) => {
                submitter.submit_with_args(1, &types::SubmitArgs::new().timespec(&drain_ts))
            }
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
            };
            if !cqueue::more(flags) {
                armed[sock] = false; // the multishot request ended: re-arm after recycling
            }
            if res < 0 {
                match -res {
                    libc::ENOBUFS => engine.counters.ring_stalls += 1,
                    libc::ECANCELED | libc::EINTR => {}
                    errno => {
                        errors_in_a_row += 1;
                        if errors_in_a_row > 1000 {
                            return Err(io::Error::from_raw_os_error(errno));
                        }
                    }
                }
                continue;
            }
            let Some(bid) = cqueue::buffer_select(flags) else {
                continue;
            };
            errors_in_a_row = 0;
            pending.push(bid);
            let buf = bufs.buf_mut(bid, buf_size);
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
            };
            if engine.on_datagram(sock, rx) {
                engine.flush();
                recycle(&mut bufs, &mut pending);
            }
        }
        cq.sync();
        engine.flush();
        recycle(&mut bufs, &mut pending);

        match drain_started {
            None if engine.should_stop() => drain_started = Some(std::time::Instant::now()),
            Some(t) if seen == 0 || t.elapsed() > DRAIN_LIMIT => break,
            _ => {}
        }
    }
    engine.finish();
    let _ = submitter.unregister_buf_ring(BGID);
    drop((submitter, sq, cq));
    drop(ring);
    Ok(())
}

fn recycle(bufs: &mut BufRing, pending: &mut Vec<u16>) {
    if pending.is_empty() {
        return;
    }
    for bid in pending.drain(..) {
        bufs.recycle(bid);
    }
    bufs.publish();
}
