//! recvmmsg/sendmmsg backend, for kernels or sandboxes that refuse io_uring.
//!
//! Per socket, `batch` receive slots (name, control, payload; with UDP_GRO
//! each payload holds a whole train, 64 KiB). A round is: poll (the sockets
//! and the stop eventfd, with no timeout), then for each readable socket
//! recvmmsg into the slots, turn each datagram into replies in place, one
//! sendmmsg, repeat while full. With `--busy-poll` there is no poll: every
//! socket is read without blocking, round after round.

use std::{
    io,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use super::{Engine, IoConfig, RxErrors};
use crate::sys::{
    cmsg::RX_CONTROL_LEN,
    mmsg::{self, RecvSlots},
};

/// Longest drain of already-queued datagrams after a stop.
const DRAIN_LIMIT: Duration = Duration::from_millis(300);
/// Most recvmmsg rounds on one socket before the others get a turn.
const ROUNDS_PER_SOCKET: usize = 16;

/// Receives, reflects and sends on socket `sock` until its queue is empty
/// or `ROUNDS_PER_SOCKET` full batches went by. Returns datagrams read.
fn service(
    engine: &mut Engine,
    sock: usize,
    slots: &mut RecvSlots,
    rx_errors: &mut RxErrors,
) -> io::Result<usize> {
    let mut total = 0;
    for _ in 0..ROUNDS_PER_SOCKET {
        let fd = engine.sockets[sock].fd.as_raw_fd();
        let n = match slots.recv(fd) {
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
        for i in 0..n {
            let rx = slots.slot(i);
            // SAFETY: the slots are reused only by the next `recv`, after
            // the flush below.
            unsafe { engine.on_datagram(sock, rx) };
        }
        engine.flush();
        total += n;
        if n < slots.capacity() {
            break;
        }
    }
    Ok(total)
}

/// Runs the worker's receive loop until the engine says stop, then drains.
pub fn run(engine: &mut Engine, cfg: &IoConfig) -> io::Result<()> {
    let mut slots: Vec<RecvSlots> = engine
        .sockets
        .iter()
        .map(|_| RecvSlots::new(cfg.batch, cfg.rx_payload_len(), true, RX_CONTROL_LEN))
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
        if cfg.busy_poll {
            // Never sleep: read every socket without blocking (they are
            // O_NONBLOCK), again and again, until asked to stop.
            for (sock, s) in slots.iter_mut().enumerate() {
                service(engine, sock, s, &mut rx_errors)?;
            }
            continue;
        }
        match mmsg::poll(&mut pollfds, -1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {
                // Woken by the reporter (crate::live): hand the latency over.
                engine.flush();
                continue;
            }
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
