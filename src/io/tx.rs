//! One `sendmmsg` per batch of replies, with every outcome counted.
//!
//! Replies to one peer leave in the order their requests arrived, always.
//!
//! The batch is first grouped by route (peer and local address), stably:
//! each route's replies keep their order, and nothing orders datagrams of
//! different peers. Then each run of replies on one route with one length
//! (optionally ended by one shorter reply, which the kernel allows as a
//! train's last segment) leaves as one message carrying a UDP GSO train
//! (`UDP_SEGMENT`): the kernel routes and queues it once and cuts it into the
//! very same datagrams further down (in the device, or at the receiving
//! socket on loopback). A length change ends a train; it never moves a reply.
//! The peer sees exactly what it would have seen otherwise.
//!
//! If a route refuses a train (EINVAL, EMSGSIZE, EIO: see
//! [`gso::route_refuses_train`]), the rest of the batch is sent again
//! datagram by datagram and GSO stays off for that socket. Any other errno
//! fails that message only: its replies count as `tx_errors`, and the rest
//! of the batch still leaves, as trains.

use std::os::fd::RawFd;

use hdrhistogram::Histogram;

use crate::{
    stats::{record_latency, Counters},
    sys::{
        clock::realtime_ns,
        cmsg::{self, PktInfo, TX_CONTROL_LEN},
        gso, mmsg,
        sockaddr::NAME_LEN,
    },
};

use crate::sys::udp::{GSO_MAX_BYTES, GSO_MAX_SEGMENTS};

/// Replies waiting for one socket's next `sendmmsg`.
///
/// Holds raw pointers to the payload of each reply: it lives in a receive
/// buffer that the backend recycles only after [`TxBatch::flush`]. Peer
/// addresses are copied in.
pub struct TxBatch {
    // One entry per reply: its payload (contiguous, so that a run of them is
    // one message's iovec array) and the rest.
    iovs: Vec<libc::iovec>,
    replies: Vec<Reply>,
    len: usize,
    // Scratch for `group_by_peer`.
    group: Vec<usize>,
    order: Vec<usize>,
    iovs_tmp: Vec<libc::iovec>,
    replies_tmp: Vec<Reply>,
    // One entry per message of the next sendmmsg: its header, its control
    // area, and the replies it carries (`first`, `count`).
    msgs: Vec<libc::mmsghdr>,
    control: Vec<[u8; TX_CONTROL_LEN]>,
    spans: Vec<(usize, usize)>,
    /// Per message: one iovec over a train whose payloads lie end to end.
    joined: Vec<libc::iovec>,
    /// Send runs of alike replies as GSO trains.
    gso: bool,
}

/// Most groups `group_by_peer` tells apart in one batch; replies to further
/// peers keep their place (each its own message).
const MAX_GROUPS: usize = 16;

/// Where a reply goes, and when its request arrived.
#[derive(Clone, Copy)]
struct Reply {
    name: [u8; NAME_LEN],
    name_len: u8,
    pktinfo: Option<PktInfo>,
    rx_ns: u64,
    /// A hash of the peer: replies with different keys never share a
    /// route (equal keys are then checked in full).
    key: u64,
}

/// FxHash-style mix of a sockaddr's bytes.
fn route_key(name: &[u8]) -> u64 {
    name.chunks(8).fold(name.len() as u64, |k, chunk| {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        (k.rotate_left(5) ^ u64::from_ne_bytes(w)).wrapping_mul(0x517c_c1b7_2722_0a95)
    })
}

impl Reply {
    fn peer(&self) -> &[u8] {
        &self.name[..usize::from(self.name_len)]
    }

    /// Same peer, same local address.
    fn same_route(&self, other: &Reply) -> bool {
        self.peer() == other.peer() && self.pktinfo == other.pktinfo
    }
}

impl TxBatch {
    /// A batch of up to `capacity` replies; `gso` allows GSO trains.
    pub fn new(capacity: usize, gso: bool) -> Self {
        // SAFETY: mmsghdr is a plain C struct; all-zero is valid.
        let zeroed_msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let null_iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let none = Reply {
            name: [0; NAME_LEN],
            name_len: 0,
            pktinfo: None,
            rx_ns: 0,
            key: 0,
        };
        TxBatch {
            iovs: vec![null_iov; capacity],
            replies: vec![none; capacity],
            len: 0,
            group: vec![0; capacity],
            order: Vec::with_capacity(capacity),
            iovs_tmp: vec![null_iov; capacity],
            replies_tmp: vec![none; capacity],
            msgs: vec![zeroed_msg; capacity],
            control: vec![[0; TX_CONTROL_LEN]; capacity],
            spans: vec![(0, 0); capacity],
            joined: vec![null_iov; capacity],
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

    /// Queues a reply of `payload` to the sockaddr bytes `name`, from the
    /// local address in `pktinfo`. `rx_ns` is the request's kernel receive time
    /// (0 when unknown). The batch keeps a pointer to `payload`, not a copy
    /// (names are copied).
    ///
    /// # Safety
    /// The memory behind `payload` must stay allocated and untouched until
    /// the batch's next [`TxBatch::flush`] or [`TxBatch::clear`] (or its
    /// drop): `flush` sends from it.
    #[inline]
    pub unsafe fn push(
        &mut self,
        name: &[u8],
        payload: &mut [u8],
        pktinfo: Option<&PktInfo>,
        rx_ns: u64,
    ) {
        debug_assert!(!self.is_full());
        let i = self.len;
        let n = name.len().min(NAME_LEN);
        let r = &mut self.replies[i];
        r.name[..n].copy_from_slice(&name[..n]);
        r.name_len = n as u8;
        r.pktinfo = pktinfo.copied();
        r.rx_ns = rx_ns;
        // Only grouping and trains read the key.
        r.key = if self.gso { route_key(&name[..n]) } else { 0 };
        self.iovs[i] = libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: payload.len(),
        };
        self.len += 1;
    }

    /// Forgets every queued reply without sending it (benchmarks only).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Whether replies `i` and `j` go to the same peer from the same local
    /// address. Only this decides grouping: never the length, so a peer's
    /// replies keep their order.
    fn same_route(&self, i: usize, j: usize) -> bool {
        let (a, b) = (&self.replies[i], &self.replies[j]);
        a.key == b.key && a.same_route(b)
    }

    /// Reorders the batch so that replies on one route are next to each
    /// other, stably: replies keep their order within each route, and routes
    /// come in the order of their first reply. Leaves an already grouped
    /// batch (the common case) untouched. Cost: at most MAX_GROUPS key
    /// compares per reply.
    fn group_by_peer(&mut self) {
        let n = self.len;
        if n < 3 {
            return;
        }
        // Each group is named by its first reply, its leader.
        let mut leaders = [0usize; MAX_GROUPS];
        let mut nleaders = 0;
        let mut grouped = true;
        for i in 0..n {
            let leader = match leaders[..nleaders].iter().find(|&&j| self.same_route(j, i)) {
                Some(&j) => j,
                None => {
                    if nleaders < MAX_GROUPS {
                        leaders[nleaders] = i;
                        nleaders += 1;
                    }
                    i
                }
            };
            grouped &= i == 0 || leader >= self.group[i - 1];
            self.group[i] = leader;
        }
        if grouped {
            return;
        }
        self.order.clear();
        self.order.extend(0..n);
        let group = &self.group;
        // Unique keys, so an unstable sort (which allocates nothing) keeps
        // each group's replies in their order.
        self.order.sort_unstable_by_key(|&i| (group[i], i));
        for (k, &i) in self.order.iter().enumerate() {
            self.iovs_tmp[k] = self.iovs[i];
            self.replies_tmp[k] = self.replies[i];
        }
        self.iovs[..n].copy_from_slice(&self.iovs_tmp[..n]);
        self.replies[..n].copy_from_slice(&self.replies_tmp[..n]);
    }

    /// How many replies from `i` on can share one message, within the
    /// kernel's limits: the next replies on the same route with the same
    /// length, then at most one shorter, non-empty one (a train's last
    /// segment may be short; `__udp_gso_segment` cuts at the segment size).
    /// A longer or empty reply, or another route, ends the train.
    fn train_len(&self, i: usize) -> usize {
        let size = self.iovs[i].iov_len;
        if !self.gso || size == 0 {
            return 1;
        }
        let limit = GSO_MAX_SEGMENTS.min(GSO_MAX_BYTES / size);
        let mut k = 1;
        while k < limit && i + k < self.len && self.same_route(i, i + k) {
            let next = self.iovs[i + k].iov_len;
            if next == size {
                k += 1;
            } else {
                if next != 0 && next < size && k * size + next <= GSO_MAX_BYTES {
                    k += 1; // the short last segment
                }
                break;
            }
        }
        k
    }

    /// Lays out the messages for replies `start..len`; returns how many.
    fn build_messages(&mut self, start: usize) -> usize {
        let (mut m, mut i) = (0, start);
        while i < self.len {
            let count = self.train_len(i);
            let control = &mut self.control[m];
            let reply = &mut self.replies[i];
            let mut controllen = match &reply.pktinfo {
                Some(pi) => cmsg::encode_reply_pktinfo(pi, control),
                None => 0,
            };
            if count > 1 {
                let segment = self.iovs[i].iov_len as u16;
                controllen += cmsg::encode_udp_segment(segment, &mut control[controllen..]);
            }
            let hdr = &mut self.msgs[m].msg_hdr;
            hdr.msg_name = reply.name.as_mut_ptr().cast();
            hdr.msg_namelen = libc::socklen_t::from(reply.name_len);
            let run = &self.iovs[i..i + count];
            let contiguous = count > 1
                && run.windows(2).all(|w| {
                    w[0].iov_base.cast::<u8>().wrapping_add(w[0].iov_len) == w[1].iov_base.cast()
                });
            if contiguous {
                self.joined[m] = libc::iovec {
                    iov_base: run[0].iov_base,
                    iov_len: run.iter().map(|v| v.iov_len).sum(),
                };
                hdr.msg_iov = &mut self.joined[m];
                hdr.msg_iovlen = 1;
            } else {
                hdr.msg_iov = &mut self.iovs[i];
                hdr.msg_iovlen = count as _;
            }
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
    /// on). A train the route refuses (see [`gso::route_refuses_train`])
    /// turns GSO off for this batch and the next ones, and its replies go
    /// again one by one. Records the latency of each sent reply when its
    /// call returns.
    pub fn flush(&mut self, fd: RawFd, counters: &mut Counters, latency: &mut Histogram<u64>) {
        if self.gso {
            self.group_by_peer();
        }
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
                                let rx_ns = self.replies[j].rx_ns;
                                if rx_ns != 0 {
                                    record_latency(latency, rx_ns, now);
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
                        _ if self.spans[m].1 > 1 && gso::route_refuses_train(&e) => {
                            // The route cannot take trains: lay the rest of
                            // the batch out again, one datagram per message.
                            warn_gso_off(&e);
                            self.gso = false;
                            start = self.spans[m].0;
                            continue 'batch;
                        }
                        _ => {
                            // About this message's peer only: its replies
                            // fail, the rest of the batch goes on.
                            crate::io::warn_tx_error(&e);
                            counters.tx_errors += self.spans[m].1 as u64;
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
    use std::os::fd::AsRawFd;

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
                // One iovec per reply, or one over replies that lie end to
                // end: either way the message carries exactly their bytes.
                assert!(
                    iovlen == count || iovlen == 1,
                    "{iovlen} iovecs, {count} replies"
                );
                // SAFETY: build_messages pointed msg_iov at `iovlen` live iovecs.
                let iovs = unsafe { std::slice::from_raw_parts(hdr.msg_iov, iovlen) };
                let sent: usize = iovs.iter().map(|v| v.iov_len).sum();
                let replies = &batch.iovs[first..first + count];
                assert_eq!(sent, replies.iter().map(|v| v.iov_len).sum::<usize>());
                assert_eq!(iovs[0].iov_base, replies[0].iov_base);
                (first, count, controllen)
            })
            .collect()
    }

    /// The iovec counts of each message.
    fn iovlens(batch: &mut TxBatch) -> Vec<usize> {
        let n = batch.build_messages(0);
        // msg_iovlen is size_t on glibc (int on musl).
        #[allow(clippy::unnecessary_cast)]
        let v = (0..n)
            .map(|m| batch.msgs[m].msg_hdr.msg_iovlen as usize)
            .collect();
        v
    }

    #[test]
    fn a_train_whose_payloads_lie_end_to_end_is_one_iovec() {
        // A GRO train's datagrams, answered in place: one buffer, end to end.
        let mut buf = [0u8; 5 * 64];
        let mut b = TxBatch::new(8, true);
        let p = peer(11);
        for d in buf.chunks_mut(64) {
            // SAFETY: `buf` outlives the batch's use of it (built, not sent).
            unsafe { b.push(&p, d, None, 0) };
        }
        assert_eq!(layout(&mut b), vec![(0, 5, cmsg::space(2))]);
        assert_eq!(iovlens(&mut b), vec![1]);

        // Payloads apart from each other: one iovec each.
        let mut bufs = [[0u8; 100]; 3];
        let mut b = TxBatch::new(8, true);
        for d in bufs.iter_mut() {
            // SAFETY: `bufs` outlives the batch's use of it (built, not sent).
            unsafe { b.push(&p, &mut d[..64], None, 0) };
        }
        assert_eq!(iovlens(&mut b), vec![3]);
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
            (32, &p1), // shorter: may end the train
            (0, &p1),  // empty: never a train
            (0, &p1),
        ];
        for (buf, (size, name)) in bufs.iter_mut().zip(sizes_and_peers) {
            // SAFETY: the test's buffers outlive the batch's use of them.
            unsafe { b.push(name, &mut buf[..size], None, 0) };
        }
        let seg = cmsg::space(std::mem::size_of::<u16>());
        assert_eq!(
            layout(&mut b),
            vec![(0, 3, seg), (3, 3, seg), (6, 1, 0), (7, 1, 0)]
        );
    }

    #[test]
    fn one_peers_mixed_lengths_keep_their_order() {
        // 64, 32, 64, 64, 100, 100 to one peer: a length change ends a
        // train (a shorter one may close it), nothing moves.
        let sizes = [64, 32, 64, 64, 100, 100];
        let mut bufs = [[0u8; 100]; 6];
        let mut b = TxBatch::new(6, true);
        let p = peer(1);
        for (i, (buf, size)) in bufs.iter_mut().zip(sizes).enumerate() {
            buf[0] = i as u8;
            // SAFETY: the test's buffers outlive the batch's use of them.
            unsafe { b.push(&p, &mut buf[..size], None, 0) };
        }
        b.group_by_peer();
        assert_eq!(sent_order(&b), vec![0, 1, 2, 3, 4, 5]);
        let spans: Vec<(usize, usize)> = layout(&mut b).iter().map(|t| (t.0, t.1)).collect();
        assert_eq!(spans, vec![(0, 2), (2, 2), (4, 2)]);
    }

    /// The order of replies after grouping, by their first payload byte.
    fn sent_order(batch: &TxBatch) -> Vec<u8> {
        batch.iovs[..batch.len]
            .iter()
            // SAFETY: every iovec points into a live test buffer of at least 1 byte.
            .map(|v| unsafe { *v.iov_base.cast::<u8>() })
            .collect()
    }

    #[test]
    fn interleaved_peers_are_grouped_keeping_each_peers_order() {
        let mut bufs = [[0u8; 64]; 7];
        let mut b = TxBatch::new(7, true);
        let [pa, pb, pc] = [peer(1), peer(2), peer(3)];
        let peers = [&pa, &pb, &pa, &pc, &pb, &pa, &pc];
        for (i, (buf, name)) in bufs.iter_mut().zip(peers).enumerate() {
            buf[0] = i as u8;
            // SAFETY: the test's buffers outlive the batch's use of them.
            unsafe { b.push(name, buf, None, 0) };
        }
        b.group_by_peer();
        // a: 0 2 5, then b: 1 4, then c: 3 6.
        assert_eq!(sent_order(&b), vec![0, 2, 5, 1, 4, 3, 6]);
        let counts: Vec<usize> = layout(&mut b).iter().map(|t| t.1).collect();
        assert_eq!(counts, vec![3, 2, 2]);
    }

    #[test]
    fn past_the_group_limit_replies_keep_their_place() {
        let n = MAX_GROUPS + 3;
        let mut bufs = vec![[0u8; 64]; 2 * n];
        let mut b = TxBatch::new(2 * n, true);
        // Peers 0..n, twice over: the first MAX_GROUPS peers are grouped,
        // the rest each stay where they were.
        for (i, buf) in bufs.iter_mut().enumerate() {
            buf[0] = i as u8;
            // SAFETY: the test's buffers outlive the batch's use of them.
            unsafe { b.push(&peer((i % n) as u16), buf, None, 0) };
        }
        b.group_by_peer();
        let order = sent_order(&b);
        let mut expect = Vec::new();
        for g in 0..MAX_GROUPS {
            expect.extend([g as u8, (g + n) as u8]);
        }
        for i in MAX_GROUPS..n {
            expect.push(i as u8);
        }
        for i in n + MAX_GROUPS..2 * n {
            expect.push(i as u8);
        }
        assert_eq!(order, expect);
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
            // SAFETY: the test's buffers outlive the batch's use of them.
            unsafe { b.push(&p, buf, Some(&pi), 0) };
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
            // SAFETY: the test's buffers outlive the batch's use of them.
            unsafe { b.push(&p, buf, None, 0) };
        }
        let counts: Vec<usize> = layout(&mut b).iter().map(|t| t.1).collect();
        assert_eq!(counts, vec![64, 36]);

        // 9000-byte replies: at most 7 fit in 65507 bytes.
        let mut big = vec![vec![0u8; 9000]; 10];
        let mut b = TxBatch::new(10, true);
        for buf in big.iter_mut() {
            // SAFETY: the test's buffers outlive the batch's use of them.
            unsafe { b.push(&p, buf, None, 0) };
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
            // SAFETY: the test's buffers outlive the batch's use of them.
            unsafe { b.push(&p, buf, None, 0) };
        }
        let counts: Vec<usize> = layout(&mut b).iter().map(|t| t.1).collect();
        assert_eq!(counts, vec![1, 1, 1, 1]);
    }

    /// A sockaddr of `len` bytes whose first byte names the peer.
    fn sockaddr_of(peer: u8, len: usize) -> Vec<u8> {
        let mut name = vec![0u8; len];
        name[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        name[2] = 0x80 | peer;
        name
    }

    /// What the peers receive from the messages laid out for `batch`, with
    /// each message cut as the kernel cuts a UDP GSO train (at its
    /// UDP_SEGMENT size; the last segment may be shorter): per peer name,
    /// its datagrams in order. Also checks each message against the
    /// kernel's train limits.
    fn as_received(batch: &mut TxBatch) -> Vec<(Vec<u8>, Vec<Vec<u8>>)> {
        let mut got: Vec<(Vec<u8>, Vec<Vec<u8>>)> = Vec::new();
        let n = batch.build_messages(0);
        for m in 0..n {
            let (first, count) = batch.spans[m];
            let hdr = &batch.msgs[m].msg_hdr;
            let name = batch.replies[first].peer().to_vec();
            assert_eq!(hdr.msg_namelen as usize, name.len());
            let mut bytes = Vec::new();
            for iov in &batch.iovs[first..first + count] {
                // SAFETY: every iovec points into a live test buffer of iov_len bytes.
                let s =
                    unsafe { std::slice::from_raw_parts(iov.iov_base.cast::<u8>(), iov.iov_len) };
                bytes.extend_from_slice(s);
            }
            let dgrams: Vec<Vec<u8>> = if count == 1 {
                vec![bytes]
            } else {
                let segment = batch.iovs[first].iov_len;
                assert!(count <= GSO_MAX_SEGMENTS, "{count} segments");
                assert!(bytes.len() <= GSO_MAX_BYTES, "{} bytes", bytes.len());
                assert_eq!(
                    bytes.len().div_ceil(segment),
                    count,
                    "segments of {segment}"
                );
                bytes.chunks(segment).map(<[u8]>::to_vec).collect()
            };
            match got.iter_mut().find(|(p, _)| *p == name) {
                Some((_, v)) => v.extend(dgrams),
                None => got.push((name, dgrams)),
            }
        }
        got
    }

    proptest::proptest! {
        /// Any mix of peers and lengths: each peer receives exactly its
        /// datagrams, in the order they were queued, byte for byte.
        #[test]
        fn each_peer_gets_its_datagrams_in_order_byte_for_byte(
            sends in proptest::collection::vec((0u8..20, 0usize..300), 1..200),
            name_len in proptest::sample::select(vec![16usize, 28]),
        ) {
            let mut bufs: Vec<Vec<u8>> = sends
                .iter()
                .enumerate()
                .map(|(i, &(_, len))| (0..len).map(|k| (i * 7 + k) as u8).collect())
                .collect();
            let mut expect: Vec<(Vec<u8>, Vec<Vec<u8>>)> = Vec::new();
            let mut b = TxBatch::new(sends.len(), true);
            for (buf, &(p, _)) in bufs.iter_mut().zip(&sends) {
                let name = sockaddr_of(p, name_len);
                match expect.iter_mut().find(|(q, _)| *q == name) {
                    Some((_, v)) => v.push(buf.clone()),
                    None => expect.push((name.clone(), vec![buf.clone()])),
                }
                // SAFETY: the test's buffers outlive the batch's use of them.
                unsafe { b.push(&name, buf, None, 0) };
            }
            b.group_by_peer();
            let mut got = as_received(&mut b);
            got.sort();
            expect.sort();
            proptest::prop_assert_eq!(got, expect);
        }
    }

    /// A unix datagram socket bound to a fresh abstract name, and that
    /// name as sockaddr bytes (what msg_name carries).
    fn unix_peer(tag: &str) -> (std::os::unix::net::UnixDatagram, Vec<u8>) {
        use std::os::linux::net::SocketAddrExt;
        let abstract_name = format!("urt-tx-{tag}-{}", std::process::id());
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
        let sock = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
        (sock, unix_name(&abstract_name))
    }

    /// sockaddr_un bytes of an abstract name: family, a NUL, the name.
    fn unix_name(abstract_name: &str) -> Vec<u8> {
        let mut name = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        name.push(0);
        name.extend_from_slice(abstract_name.as_bytes());
        assert!(name.len() <= NAME_LEN);
        name
    }

    /// Datagrams waiting on `sock`, each as its length.
    fn drain(sock: &std::os::unix::net::UnixDatagram) -> Vec<usize> {
        sock.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        std::iter::from_fn(|| sock.recv(&mut buf).ok()).collect()
    }

    // flush's accounting, without a network: unix datagram sockets take the
    // same sendmmsg (a UDP_SEGMENT cmsg is ignored there, so a train arrives
    // as one datagram) and give per-peer errnos deterministically.

    #[test]
    fn a_refused_peer_fails_its_own_replies_only_and_gso_stays_on() {
        let (good, good_name) = unix_peer("good");
        // No socket has this name: sendmmsg refuses it with ECONNREFUSED.
        let bad_name = unix_name(&format!("urt-tx-nobody-{}", std::process::id()));
        let sender = std::os::unix::net::UnixDatagram::unbound().unwrap();
        sender.set_nonblocking(true).unwrap();
        let mut bufs = [[7u8; 50]; 6];
        let mut b = TxBatch::new(6, true);
        for (i, buf) in bufs.iter_mut().enumerate() {
            let name = if i % 2 == 0 { &bad_name } else { &good_name };
            // SAFETY: the test's buffers outlive the batch's use of them.
            unsafe { b.push(name, buf, None, 0) };
        }
        let (mut c, mut h) = (Counters::default(), crate::stats::new_latency_histogram());
        b.flush(sender.as_raw_fd(), &mut c, &mut h);
        assert_eq!(
            (c.tx_errors, c.tx_packets, c.tx_dropped),
            (3, 3, 0),
            "{c:?}"
        );
        assert!(b.gso, "ECONNREFUSED is about one peer, not about GSO");
        // The good peer's three replies left as one train (one message).
        assert_eq!(drain(&good), vec![150]);
    }

    #[test]
    fn a_bad_descriptor_fails_every_message_and_gso_stays_on() {
        let mut bufs = [[0u8; 40]; 5];
        let mut b = TxBatch::new(5, true);
        for (i, buf) in bufs.iter_mut().enumerate() {
            // SAFETY: the test's buffers outlive the batch's use of them.
            unsafe { b.push(&peer(1 + (i % 2) as u16), buf, None, 0) };
        }
        let (mut c, mut h) = (Counters::default(), crate::stats::new_latency_histogram());
        b.flush(-1, &mut c, &mut h); // EBADF
        assert_eq!(
            (c.tx_errors, c.tx_packets, c.tx_dropped),
            (5, 0, 0),
            "{c:?}"
        );
        assert!(b.gso);
        assert!(b.is_empty());
    }

    #[test]
    fn a_full_peer_queue_drops_the_rest_of_the_batch() {
        let (full, full_name) = unix_peer("full");
        let sender = std::os::unix::net::UnixDatagram::unbound().unwrap();
        sender.set_nonblocking(true).unwrap();
        let addr = full.local_addr().unwrap();
        // Fill the receiver's queue until the kernel says EAGAIN (bounded).
        let mut filled = false;
        for _ in 0..100_000 {
            match sender.send_to_addr(&[0u8; 1], &addr) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    filled = true;
                    break;
                }
                Err(e) => panic!("filling the queue: {e}"),
            }
        }
        assert!(filled, "the receive queue never filled");
        let mut bufs = [[0u8; 30]; 4];
        let mut b = TxBatch::new(4, false);
        for buf in bufs.iter_mut() {
            // SAFETY: the test's buffers outlive the batch's use of them.
            unsafe { b.push(&full_name, buf, None, 0) };
        }
        let (mut c, mut h) = (Counters::default(), crate::stats::new_latency_histogram());
        b.flush(sender.as_raw_fd(), &mut c, &mut h);
        assert_eq!(
            (c.tx_dropped, c.tx_packets, c.tx_errors),
            (4, 0, 0),
            "{c:?}"
        );
    }

    #[test]
    fn a_route_that_refuses_trains_gets_the_replies_one_by_one() {
        // A UDP socket with checksums off (SO_NO_CHECK) refuses every GSO
        // train with EINVAL (udp_send_skb) but sends single datagrams.
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        crate::sys::socket::setsockopt_int(tx.as_raw_fd(), libc::SOL_SOCKET, libc::SO_NO_CHECK, 1)
            .unwrap();
        let name = crate::sys::sockaddr::to_raw(&rx.local_addr().unwrap());
        // SAFETY: `to_raw` filled `len` bytes of the storage.
        let name =
            unsafe { std::slice::from_raw_parts(name.as_ptr().cast::<u8>(), name.len as usize) }
                .to_vec();
        let mut bufs = [[9u8; 64]; 4];
        let mut b = TxBatch::new(4, true);
        for buf in bufs.iter_mut() {
            // SAFETY: the test's buffers outlive the batch's use of them.
            unsafe { b.push(&name, buf, None, 0) };
        }
        let (mut c, mut h) = (Counters::default(), crate::stats::new_latency_histogram());
        b.flush(tx.as_raw_fd(), &mut c, &mut h);
        assert_eq!(
            (c.tx_packets, c.tx_errors, c.tx_dropped),
            (4, 0, 0),
            "{c:?}"
        );
        assert!(!b.gso, "EINVAL on a train turns GSO off");
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 1024];
        for _ in 0..4 {
            assert_eq!(rx.recv(&mut buf).unwrap(), 64);
        }
    }
}
