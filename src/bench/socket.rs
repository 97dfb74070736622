//! The client side of `bench`: one connected, non-blocking UDP socket per
//! flow, batched sends (`sendmmsg`, optionally of UDP GSO trains), batched
//! receives (`recvmmsg`), and `poll` over a flow group.
//!
//! Safe code only: the sockets are [`crate::sys::socket`]'s, the batch
//! layouts [`crate::sys::mmsg`]'s (shared with the reflector's mmsg
//! backend); this file adds GSO/GRO trains and polling.
//!
//! Every call is non-blocking, so a sender thread and a receiver thread can
//! share one socket without either stalling the other, and every loop above
//! stays bounded by its own clock.

use std::{
    io,
    net::SocketAddr,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
    time::Duration,
};

use crate::sys::{
    cmsg,
    mmsg::{self, RecvSlots, SendChunks},
    socket,
};

/// A UDP socket connected to the target: the kernel picks the source address
/// and a port of its own, so each flow is a distinct 4-tuple that
/// SO_REUSEPORT on the server hashes independently. Being connected, it
/// receives only datagrams from the target's address and port.
#[derive(Debug)]
pub struct FlowSocket {
    fd: OwnedFd,
}

impl FlowSocket {
    /// Opens a non-blocking socket of `target`'s family, connected to `target`.
    pub fn connect(target: &SocketAddr) -> io::Result<FlowSocket> {
        Ok(FlowSocket {
            fd: socket::connected_udp_socket(target)?,
        })
    }

    /// The local address and port the kernel chose.
    #[cfg(test)]
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        socket::local_addr(self.fd.as_raw_fd())
    }

    /// Asks for a receive buffer of `bytes`; the kernel caps it at
    /// `net.core.rmem_max` without saying so.
    pub fn set_rcvbuf(&self, bytes: u32) -> io::Result<()> {
        self.set_int(
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            bytes.min(i32::MAX as u32) as i32,
        )
    }

    /// Sets `UDP_SEGMENT`: from now on every send longer than `segment` bytes
    /// leaves as a train of `segment`-byte datagrams (the last may be
    /// shorter), segmented by the kernel or the NIC. 0 turns it off. The
    /// socket option saves a control message per send; the kernel treats
    /// both alike (`udp_sendmsg` starts from the socket's `gso_size`, which
    /// a cmsg overrides). Needs Linux >= 4.18; ENOPROTOOPT before that.
    pub fn set_gso_segment(&self, segment: u16) -> io::Result<()> {
        self.set_int(libc::SOL_UDP, libc::UDP_SEGMENT, i32::from(segment))
    }

    /// Sets `UDP_GRO`: the kernel may hand over a train of datagrams of one
    /// flow in one read, with a `UDP_GRO` control message giving their size
    /// (a GSO train sent on loopback arrives whole; on a NIC, GRO merges a
    /// flow's datagrams). Needs Linux >= 5.0; ENOPROTOOPT before that.
    pub fn set_gro(&self, on: bool) -> io::Result<()> {
        self.set_int(libc::SOL_UDP, libc::UDP_GRO, i32::from(on))
    }

    /// Datagrams the kernel dropped at this socket since it was opened,
    /// almost always because its receive queue was full.
    pub fn drops(&self) -> io::Result<u32> {
        socket::meminfo_drops(self.fd.as_raw_fd())
    }

    fn set_int(&self, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
        socket::setsockopt_int(self.fd.as_raw_fd(), level, name, value)
    }
}

impl AsFd for FlowSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Reusable `sendmmsg` vectors for up to `capacity` messages.
pub struct SendBatch {
    chunks: SendChunks,
}

impl SendBatch {
    pub fn new(capacity: usize) -> SendBatch {
        SendBatch {
            chunks: SendChunks::new(capacity),
        }
    }

    /// Sends `buf` cut into messages of `msg_len` bytes (the last may be
    /// shorter), at most the capacity given to [`SendBatch::new`], with one
    /// `sendmmsg`. With `UDP_SEGMENT` set each message is a GSO train.
    /// Returns how many messages, from the first, the kernel accepted: UDP
    /// copies them into the kernel before the call returns. An error means
    /// none was sent.
    pub fn send(&mut self, sock: &FlowSocket, buf: &[u8], msg_len: usize) -> io::Result<usize> {
        self.chunks.send(sock.fd.as_raw_fd(), buf, msg_len)
    }
}

/// Reusable `recvmmsg` vectors and `slots` buffers of `slot_len` bytes each.
///
/// With `gro`, each slot also has a control area for the `UDP_GRO` message,
/// and a slot that holds a train is split back into its datagrams: a
/// train of N counts as N datagrams, in order.
pub struct RecvBatch {
    slots: RecvSlots,
    gro: bool,
    /// The datagrams of the last read: slot, offset, length, cut short.
    datagrams: Vec<(usize, usize, usize, bool)>,
}

/// Room for one `UDP_GRO` control message (an int) and some to spare.
const GRO_CONTROL_LEN: usize = 64;

impl RecvBatch {
    #[cfg(test)]
    pub fn new(slots: usize, slot_len: usize) -> RecvBatch {
        Self::with_gro(slots, slot_len, false)
    }

    /// `slots` slots of `slot_len` bytes; with `gro`, reads trains (`slot_len` should
    /// then hold a whole train, 65535 bytes) and splits them.
    pub fn with_gro(slots: usize, slot_len: usize, gro: bool) -> RecvBatch {
        let control = if gro { GRO_CONTROL_LEN } else { 0 };
        RecvBatch {
            slots: RecvSlots::new(slots, slot_len, false, control),
            gro,
            datagrams: Vec::with_capacity(slots.max(1)),
        }
    }

    /// Reads up to `slots` messages without blocking and returns how many
    /// datagrams they hold (a GRO train counts each of its datagrams).
    /// `Ok(0)` when none is waiting. Errors are the socket's own
    /// (ECONNREFUSED after an ICMP port unreachable from the target, for one).
    pub fn recv(&mut self, sock: &FlowSocket) -> io::Result<usize> {
        self.datagrams.clear();
        let n = match self.slots.recv(sock.fd.as_raw_fd()) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => return Err(e),
        };
        for i in 0..n {
            let slot = self.slots.slot(i);
            let (len, truncated) = (slot.len, slot.truncated);
            let segment = match self.gro {
                true => cmsg::decode(slot.control).gro_segment,
                false => None,
            };
            match segment.map(usize::from) {
                Some(seg) if seg < len => {
                    let mut off = 0;
                    while off < len {
                        let l = seg.min(len - off);
                        // Only the train's end can have been cut short.
                        self.datagrams
                            .push((i, off, l, truncated && off + l == len));
                        off += l;
                    }
                }
                _ => self.datagrams.push((i, 0, len, truncated)),
            }
        }
        Ok(self.datagrams.len())
    }

    /// Datagram `i` of the last [`RecvBatch::recv`]: its bytes, and whether
    /// the kernel cut it to fit the slot (`MSG_TRUNC`).
    pub fn datagram(&self, i: usize) -> (&[u8], bool) {
        match self.datagrams.get(i) {
            Some(&(slot, off, len, truncated)) => {
                (&self.slots.payload(slot)[off..off + len], truncated)
            }
            None => (&[], false),
        }
    }
}

/// `poll` over a fixed set of sockets, waiting for datagrams to read.
pub struct PollSet {
    fds: Vec<libc::pollfd>,
}

impl PollSet {
    pub fn new<'a>(socks: impl IntoIterator<Item = &'a FlowSocket>) -> PollSet {
        let pollfd = |s: &FlowSocket| libc::pollfd {
            fd: s.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        PollSet {
            fds: socks.into_iter().map(pollfd).collect(),
        }
    }

    /// Waits up to `timeout` (rounded up to whole milliseconds) for any socket
    /// to become readable or report an error. Returns how many are ready; an
    /// interrupted wait counts as none ready.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<usize> {
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        match mmsg::poll(&mut self.fds, ms) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.fds.iter_mut().for_each(|p| p.revents = 0);
                Ok(0)
            }
            r => r,
        }
    }

    /// Whether socket `i` had something to read (or an error to collect) at the last wait.
    pub fn ready(&self, i: usize) -> bool {
        self.fds[i].revents != 0
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;

    use super::*;

    #[test]
    fn batches_round_trip_over_loopback() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sock = FlowSocket::connect(&server.local_addr().unwrap()).unwrap();
        let local = sock.local_addr().unwrap();
        assert!(local.ip().is_loopback() && local.port() != 0);

        let buf: Vec<u8> = (0..30u8).collect();
        let sent = SendBatch::new(8).send(&sock, &buf, 10).unwrap();
        assert_eq!(sent, 3);
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut b = [0u8; 64];
        for i in 0..3u8 {
            let (n, from) = server.recv_from(&mut b).unwrap();
            assert_eq!((n, from), (10, local));
            assert_eq!(b[0], i * 10);
            server.send_to(&b[..n], from).unwrap();
        }

        let mut polls = PollSet::new([&sock]);
        let mut rx = RecvBatch::new(4, 8);
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while got.len() < 3 && std::time::Instant::now() < deadline {
            polls.wait(Duration::from_millis(100)).unwrap();
            let n = rx.recv(&sock).unwrap();
            for i in 0..n {
                let (d, truncated) = rx.datagram(i);
                got.push((d.to_vec(), truncated));
            }
        }
        assert_eq!(got.len(), 3);
        // 10-byte datagrams into 8-byte slots: cut, and flagged as cut.
        assert!(got.iter().all(|(d, t)| d.len() == 8 && *t));
        assert_eq!(got[2].0[0], 20);
        assert_eq!(
            rx.recv(&sock).unwrap(),
            0,
            "nothing left: no blocking, no error"
        );
        assert_eq!(
            rx.datagram(0),
            (&[][..], false),
            "nothing read, nothing shown"
        );
        assert_eq!(sock.drops().unwrap(), 0);
    }

    #[test]
    fn gso_trains_arrive_as_separate_datagrams() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sock = FlowSocket::connect(&server.local_addr().unwrap()).unwrap();
        if let Err(e) = sock.set_gso_segment(100) {
            eprintln!("skipped: UDP_SEGMENT refused by this kernel ({e})");
            return;
        }
        let buf = vec![7u8; 250];
        assert_eq!(SendBatch::new(4).send(&sock, &buf, 250).unwrap(), 1);
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut b = [0u8; 512];
        let lens: Vec<usize> = (0..3).map(|_| server.recv(&mut b).unwrap()).collect();
        assert_eq!(lens, [100, 100, 50]);
    }

    #[test]
    fn gro_reads_a_train_as_its_datagrams_in_order() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx_sock = FlowSocket::connect(&server.local_addr().unwrap()).unwrap();
        if let Err(e) = rx_sock.set_gro(true) {
            eprintln!("skipped: UDP_GRO refused by this kernel ({e})");
            return;
        }
        // The server (rx_sock's peer) sends one train of 100, 100, 50 bytes.
        let buf: Vec<u8> = (0..250).map(|i| (i / 100) as u8 + 1).collect();
        socket::setsockopt_int(server.as_raw_fd(), libc::SOL_UDP, libc::UDP_SEGMENT, 100).unwrap();
        server.send_to(&buf, rx_sock.local_addr().unwrap()).unwrap();
        let mut rx = RecvBatch::with_gro(4, 65535, true);
        let mut n = 0;
        for _ in 0..200 {
            n = rx.recv(&rx_sock).unwrap();
            if n > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(n, 3, "one train read as its three datagrams");
        let got: Vec<(Vec<u8>, bool)> = (0..3)
            .map(|i| (rx.datagram(i).0.to_vec(), rx.datagram(i).1))
            .collect();
        assert_eq!(got[0], (vec![1u8; 100], false));
        assert_eq!(got[1], (vec![2u8; 100], false));
        assert_eq!(got[2], (vec![3u8; 50], false));
        assert_eq!(rx.datagram(3), (&[][..], false));
    }
}
