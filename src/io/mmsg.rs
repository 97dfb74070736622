//! recvmmsg/sendmmsg backend, for kernels or sandboxes that refuse io_uring.
//!
//! Per socket, `batch` receive slots (name, control, payload). A round is:
//! poll (the sockets and the stop eventfd, with no timeout), then for each
//! readable socket recvmmsg into the slots, turn each datagram into replies
//! in place, one sendmmsg, repeat while full.

use std::{
    io,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use super::{Engine, IoConfig, Received, RxErrors};
use crate::sys::{cmsg::RX_CONTROL_LEN, mmsg, sockaddr::NAME_LEN};

/// Longest drain of already-queued datagrams after a stop.
const DRAIN_LIMIT: Duration = Duration::from_millis(300);
/// Most recvmmsg rounds on one socket before the others get a turn.
const ROUNDS_PER_SOCKET: usize = 16;

/// Receive slots of one socket.
struct Slots {
    payload: Vec<u8>,
    names: Vec<[u8; NAME_LEN]>,
    control: Vec<[u8; RX_CONTROL_LEN]>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    stride: usize,
}

impl Slots {
    fn new(batch: usize, stride: usize) -> Self {
        // SAFETY: mmsghdr is a plain C struct; all-zero is valid.
        let zeroed: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Slots {
            payload: vec![0; batch * stride],
            names: vec![[0; NAME_LEN]; batch],
            control: vec![[0; RX_CONTROL_LEN]; batch],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                batch
            ],
            msgs: vec![zeroed; batch],
            stride,
        }
    }

    /// Points every header at its slot again (the kernel rewrites lengths).
    fn reset(&mut self) {
        for i in 0..self.msgs.len() {
            self.iovs[i] = libc::iovec {
                iov_base: self.payload[i * self.stride..].as_mut_ptr().cast(),
                iov_len: self.stride,
            };
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_name = self.names[i].as_mut_ptr().cast();
            h.msg_namelen = NAME_LEN as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.control[i].as_mut_ptr().cast();
            h.msg_controllen = RX_CONTROL_LEN as _;
            h.msg_flags = 0;
        }
    }
}

/// Receives, reflects and sends on socket `sock` until its queue is empty
/// or `ROUNDS_PER_SOCKET` full batches went by. Returns datagrams read.
fn service(
    engine: &mut Engine,
    sock: usize,
    slots: &mut Slots,
    rx_errors: &mut RxErrors,
) -> io::Result<usize> {
    let mut total = 0;
    for _ in 0..ROUNDS_PER_SOCKET {
        slots.reset();
        let fd = engine.sockets[sock].fd.as_raw_fd();
        // SAFETY: `reset` pointed every header at live, writable slot memory
        // of the stated lengths.
        let n = match unsafe { mmsg::recvmmsg(fd, &mut slots.msgs) } {
            Ok(n) => {
                rx_errors.ok();
                n
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) => 0,
            Err(e) => {
                // Transient unless it keeps failing: the same policy as uring.
                rx_errors.failed(e)?;
                break;
            }
        };
        let Slots {
            payload,
            names,
            control,
            msgs,
            stride,
            ..
        } = slots;
        let mut payloads = payload.chunks_mut(*stride);
        for ((m, name), ctl) in msgs[..n].iter().zip(names.iter_mut()).zip(control.iter()) {
            let h = &m.msg_hdr;
            let payload = payloads.next().expect("one payload slot per message");
            let wire_len = m.msg_len as usize;
            // msg_controllen is size_t on glibc and socklen_t on musl.
            #[allow(clippy::unnecessary_cast)]
            let control_len = (h.msg_controllen as usize).min(RX_CONTROL_LEN);
            let rx = Received {
                name: &mut name[..(h.msg_namelen as usize).min(NAME_LEN)],
                control: &ctl[..control_len],
                len: wire_len.min(payload.len()),
                payload,
                wire_len,
                truncated: h.msg_flags & libc::MSG_TRUNC != 0,
            };
            engine.on_datagram(sock, rx);
        }
        engine.flush();
        total += n;
        if n < msgs.len() {
            break;
        }
    }
    Ok(total)
}

/// Runs the worker's receive loop until the engine says stop, then drains.
pub fn run(engine: &mut Engine, cfg: &IoConfig) -> io::Result<()> {
    let mut slots: Vec<Slots> = engine
        .sockets
        .iter()
        .map(|_| Slots::new(cfg.batch, cfg.max_datagram))
        .collect();
    let mut pollfds: Vec<libc::pollfd> = engine
        .sockets
        .iter()
        .map(|s| libc::pollfd {
            fd: s.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // Last: the stop eventfd, so an idle worker wakes when asked to stop.
    pollfds.push(libc::pollfd {
        fd: engine.stop.fd(),
        events: libc::POLLIN,
        revents: 0,
    });
    let mut rx_errors = RxErrors::default();
    loop {
        if engine.should_stop() {
            let started = Instant::now();
            while started.elapsed() < DRAIN_LIMIT {
                let mut read = 0;
                for (sock, s) in slots.iter_mut().enumerate() {
                    read += service(engine, sock, s, &mut rx_errors)?;
                }
                if read == 0 {
                    break;
                }
            }
            break;
        }
        match mmsg::poll(&mut pollfds, -1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
        for (sock, p) in pollfds[..slots.len()].iter().enumerate() {
            if p.revents & (libc::POLLIN | libc::POLLERR) != 0 {
                service(engine, sock, &mut slots[sock], &mut rx_errors)?;
            }
        }
    }
    engine.finish();
    Ok(())
}
