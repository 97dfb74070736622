//! One `sendmmsg` per batch of replies, with every outcome counted.
//!
//! Consecutive replies of one batch that go to the same peer, from the same
//! local address and with the same length leave as one message carrying a
//! UDP GSO train (`UDP_SEGMENT`): the kernel routes and queues the train
//! once and cuts it into the very same datagrams further down (in the
//! device, or at the receiving socket on loopback). The peer sees exactly
//! what it would have seen otherwise, in the same order. If a route refuses
//! a train (a device without checksum offload, or an MTU below the
//! segment), the batch is sent again datagram by datagram and GSO stays off
//! for that socket.

use std::os::fd::RawFd;

use hdrhistogram::Histogram;

use crate::{
    stats::{record_latency, Counters},
    sys::{
        clock::realtime_ns,
        cmsg::{self, PktInfo, TX_CONTROL_LEN},
        mmsg,
        sockaddr::NAME_LEN,
    },
};

/// Most datagrams in one GSO train: the kernel's UDP_MAX_SEGMENTS before
/// Linux 6.9 (128 since).
pub const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO train: what fits one IPv4 datagram's 16-bit
/// length after the IP and UDP headers (65535 - 20 - 8).
pub const GSO_MAX_BYTES: usize = 65_507;

/// Replies waiting for one socket's next `sendmmsg`.
///
/// Holds raw pointers to the payload of each reply: it lives in a receive
/// buffer that the backend recycles only after [`TxBatch::flush`]. Peer
/// addresses are copied in.
pub struct TxBatch {
    // One entry per reply.
    iovs: Vec<libc::iovec>,
    names: Vec<[u8; NAME_LEN]>,
    name_lens: Vec<u8>,
    pktinfo: Vec<Option<PktInfo>>,
    rx_ns: Vec<u64>,
    len: usize,
    // One entry per message of the next sendmmsg: its header, its control
    // area, and the replies it carries (`first`, `count`).
    msgs: Vec<libc::mmsghdr>,
    control: Vec<[u8; TX_CONTROL_LEN]>,
    spans: Vec<(usize, usize)>,
    /// Send runs of alike replies as GSO trains.
    gso: bool,
}

// SAFETY: the raw pointers inside refer to buffers owned by the same worker
// thread that owns the batch; a batch is built and flushed on that thread.
unsafe impl Send for TxBatch {}

impl TxBatch {
    /// A batch of up to `capacity` replies; `gso` allows GSO trains.
    pub fn new(capacity: usize, gso: bool) -> Self {
        // SAFETY: mmsghdr is a plain C struct; all-zero is valid.
        let zeroed_msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let null_iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        TxBatch {
            iovs: vec![null_iov; capacity],
            names: vec![[0; NAME_LEN]; capacity],
            name_lens: vec![0; capacity],
            pktinfo: vec![None; capacity],
            rx_ns: vec![0; capacity],
            len: 0,
            msgs: vec![zeroed_msg; capacity],
            control: vec![[0; TX_CONTROL_LEN]; capacity],
            spans: vec![(0, 0); capacity],
            gso,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.iovs.len()
    }

    /// Whether runs of alike replies still leave as GSO trains.
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Queues a reply of `payload` to the sockaddr bytes `name`, from the
    /// local address in `pktinfo`. `rx_ns` is the request's kernel receive time
    /// (0 when unknown). The memory behind `payload` must stay untouched until
    /// the next `flush`.
    #[inline]
    pub fn push(&mut self, name: &[u8], payload: &mut [u8], pktinfo: Option<&PktInfo>, rx_ns: u64) {
        debug_assert!(!self.is_full());
        let i = self.len;
        let n = name.len().min(NAME_LEN);
        self.names[i][..n].copy_from_slice(&name[..n]);
        self.name_lens[i] = n as u8;
        self.iovs[i] = libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: payload.len(),
        };
        self.pktinfo[i] = pktinfo.copied();
        self.rx_ns[i] = rx_ns;
        self.len += 1;
    }

    /// Forgets every queued reply without sending it (benchmarks only).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// How many replies from `i` on can share one message: same length (not
    /// empty), same peer, same local address, within the kernel's limits.
    fn train_len(&self, i: usize) -> usize {
        let size = self.iovs[i].iov_len;
        if !self.gso || size == 0 {
            return 1;
        }
        let limit = GSO_MAX_SEGMENTS.min(GSO_MAX_BYTES / size);
        let peer = &self.names[i][..usize::from(self.name_lens[i])];
        let mut k = 1;
        while k < limit
            && i + k < self.len
            && self.iovs[i + k].iov_len == size
            && &self.names[i + k][..usize::from(self.name_lens[i + k])] == peer
            && self.pktinfo[i + k] == self.pktinfo[i]
        {
            k += 1;
        }
        k
    }

    /// Lays out the messages for replies `start..len`; returns how many.
    fn build_messages(&mut self, start: usize) -> usize {
        let (mut m, mut i) = (0, start);
        while i < self.len {
            let count = self.train_len(i);
            let control = &mut self.control[m];
            let mut controllen = match &self.pktinfo[i] {
                Some(pi) => cmsg::encode_reply_pktinfo(pi, control),
                None => 0,
            };
            if count > 1 {
                let segment = self.iovs[i].iov_len as u16;
                controllen += cmsg::encode_udp_segment(segment, &mut control[controllen..]);
            }
            let hdr = &mut self.msgs[m].msg_hdr;
            hdr.msg_name = self.names[i].as_mut_ptr().cast();
            hdr.msg_namelen = libc::socklen_t::from(self.name_lens[i]);
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = count as _;
            hdr.msg_control = if controllen == 0 {
                std::ptr::null_mut()
            } else {
                control.as_mut_ptr().cast()
            };
            hdr.msg_controllen = controllen as _;
            hdr.msg_flags = 0;
            self.spans[m] = (i, count);
            m += 1;
            i += count;
        }
        m
    }

    /// Sends every queued reply on `fd` and counts each one exactly once:
    /// `tx_packets`, `tx_dropped` (EAGAIN/ENOBUFS: the rest of the batch) or
    /// `tx_errors` (any other errno: the replies of that message, then go
    /// on). Records the latency of each sent reply when its call returns.
    pub fn flush(&mut self, fd: RawFd, counters: &mut Counters, latency: &mut Histogram<u64>) {
        let mut start = 0;
        'batch: while start < self.len {
            let nmsgs = self.build_messages(start);
            let mut m = 0;
            while m < nmsgs {
                // SAFETY: messages 0..nmsgs were laid out by `build_messages`
                // over replies whose payloads the caller keeps alive until
                // now; names, iovecs and control live in self.
                match unsafe { mmsg::sendmmsg(fd, &mut self.msgs[m..nmsgs]) } {
                    Ok(0) => {
                        // Never seen; count the message rather than spin on it.
                        counters.tx_errors += self.spans[m].1 as u64;
                        m += 1;
                    }
                    Ok(sent) => {
                        let now = realtime_ns();
                        for &(first, count) in &self.spans[m..m + sent] {
                            for j in first..first + count {
                                counters.tx_packets += 1;
                                counters.tx_bytes += self.iovs[j].iov_len as u64;
                                if self.rx_ns[j] != 0 {
                                    record_latency(latency, self.rx_ns[j], now);
                                }
                            }
                        }
                        m += sent;
                    }
                    Err(e) => match e.raw_os_error() {
                        Some(libc::EINTR) => {}
                        Some(libc::EAGAIN) | Some(libc::ENOBUFS) => {
                            counters.tx_dropped += (self.len - self.spans[m].0) as u64;
                            break 'batch;
                        }
                        _ if self.spans[m].1 > 1 => {
                            // The route refused a GSO train: lay the rest of the
                            // batch out again, one datagram per message.
                            warn_gso_off(&e);
                            self.gso = false;
                            start = self.spans[m].0;
                            continue 'batch;
                        }
                        _ => {
                            crate::io::warn_tx_error(&e);
                            counters.tx_errors += 1;
                            m += 1;
                        }
                    },
                }
            }
            break;
        }
        self.len = 0;
    }
}

/// Says once per process that a socket stopped using GSO trains, and why.
fn warn_gso_off(e: &std::io::Error) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        eprintln!(
            "udp-reflector: a route refused a UDP GSO reply ({e}); that socket now sends one datagram per message"
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> [u8; 16] {
        // A sockaddr_in for 127.0.0.1:port, as the kernel fills msg_name.
        let mut b = [0u8; 16];
        b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[4..8].copy_from_slice(&[127, 0, 0, 1]);
        b
    }

    /// The messages `build_messages` lays out, as (first reply, count,
    /// controllen) triples.
    fn layout(batch: &mut TxBatch) -> Vec<(usize, usize, usize)> {
        let n = batch.build_messages(0);
        (0..n)
            .map(|m| {
                let (first, count) = batch.spans[m];
                let hdr = &batch.msgs[m].msg_hdr;
                // Both are size_t on glibc (socklen_t on musl).
                #[allow(clippy::unnecessary_cast)]
                let (iovlen, controllen) = (hdr.msg_iovlen as usize, hdr.msg_controllen as usize);
                assert_eq!(iovlen, count);
                (first, count, controllen)
            })
            .collect()
    }

    #[test]
    fn only_runs_of_alike_replies_share_a_message() {
        let mut bufs = [[0u8; 100]; 8];
        let mut b = TxBatch::new(8, true);
        let [p0, p1] = [peer(1000), peer(1001)];
        let sizes_and_peers = [
            (64, &p0),
            (64, &p0),
            (64, &p0),
            (64, &p1), // another peer
            (64, &p1),
            (32, &p1), // another length
            (0, &p1),  // empty: never a train
            (0, &p1),
        ];
        for (buf, (size, name)) in bufs.iter_mut().zip(sizes_and_peers) {
            b.push(name, &mut buf[..size], None, 0);
        }
        let seg = cmsg::space(std::mem::size_of::<u16>());
        assert_eq!(
            layout(&mut b),
            vec![(0, 3, seg), (3, 2, seg), (5, 1, 0), (6, 1, 0), (7, 1, 0)]
        );
    }

    #[test]
    fn a_different_source_address_breaks_a_run() {
        let mut bufs = [[0u8; 64]; 3];
        let mut b = TxBatch::new(3, true);
        let p = peer(7);
        let a = PktInfo::V4 {
            spec_dst: [127, 0, 0, 1],
        };
        let c = PktInfo::V4 {
            spec_dst: [127, 0, 0, 2],
        };
        for (buf, pi) in bufs.iter_mut().zip([a, a, c]) {
            b.push(&p, buf, Some(&pi), 0);
        }
        let pktinfo = cmsg::space(std::mem::size_of::<libc::in_pktinfo>());
        let seg = cmsg::space(std::mem::size_of::<u16>());
        assert_eq!(layout(&mut b), vec![(0, 2, pktinfo + seg), (2, 1, pktinfo)]);
    }

    #[test]
    fn trains_respect_the_kernel_limits() {
        // 100 replies of 64 bytes: 64 segments, then 36.
        let mut bufs = vec![[0u8; 64]; 100];
        let mut b = TxBatch::new(100, true);
        let p = peer(9);
        for buf in bufs.iter_mut() {
            b.push(&p, buf, None, 0);
        }
        let counts: Vec<usize> = layout(&mut b).iter().map(|t| t.1).collect();
        assert_eq!(counts, vec![64, 36]);

        // 9000-byte replies: at most 7 fit in 65507 bytes.
        let mut big = vec![vec![0u8; 9000]; 10];
        let mut b = TxBatch::new(10, true);
        for buf in big.iter_mut() {
            b.push(&p, buf, None, 0);
        }
        let counts: Vec<usize> = layout(&mut b).iter().map(|t| t.1).collect();
        assert_eq!(counts, vec![7, 3]);
    }

    #[test]
    fn without_gso_every_reply_is_its_own_message() {
        let mut bufs = [[0u8; 64]; 4];
        let mut b = TxBatch::new(4, false);
        let p = peer(5);
        for buf in bufs.iter_mut() {
            b.push(&p, buf, None, 0);
        }
        let counts: Vec<usize> = layout(&mut b).iter().map(|t| t.1).collect();
        assert_eq!(counts, vec![1, 1, 1, 1]);
    }
}
