//! One `sendmmsg` per batch of replies, with every outcome counted.

use std::os::fd::RawFd;

use hdrhistogram::Histogram;

use crate::{
    stats::{record_latency, Counters},
    sys::{
        clock::realtime_ns,
        cmsg::{self, PktInfo, TX_CONTROL_LEN},
        mmsg,
    },
};

/// Replies waiting for one socket's next `sendmmsg`.
///
/// Holds raw pointers to the peer address and payload of each reply: they
/// live in receive buffers that the backend recycles only after [`TxBatch::flush`].
pub struct TxBatch {
    msgs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    control: Vec<[u8; TX_CONTROL_LEN]>,
    rx_ns: Vec<u64>,
    len: usize,
}

// SAFETY: the raw pointers inside refer to buffers owned by the same worker
// thread that owns the batch; a batch is built and flushed on that thread.
unsafe impl Send for TxBatch {}

impl TxBatch {
    pub fn new(capacity: usize) -> Self {
        // SAFETY: mmsghdr and iovec are plain C structs; all-zero is valid.
        let zeroed_msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        TxBatch {
            msgs: vec![zeroed_msg; capacity],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                capacity
            ],
            control: vec![[0; TX_CONTROL_LEN]; capacity],
            rx_ns: vec![0; capacity],
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.msgs.len()
    }

    /// Queues a reply of `payload` to the sockaddr bytes at `name`, from the
    /// local address in `pktinfo`. `rx_ns` is the request's kernel receive time
    /// (0 when unknown). The memory behind both slices must stay untouched
    /// until the next `flush`.
    #[inline]
    pub fn push(
        &mut self,
        name: &mut [u8],
        payload: &mut [u8],
        pktinfo: Option<&PktInfo>,
        rx_ns: u64,
    ) {
        debug_assert!(!self.is_full());
        let i = self.len;
        self.iovs[i] = libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: payload.len(),
        };
        let controllen = match pktinfo {
            Some(pi) => cmsg::encode_reply_pktinfo(pi, &mut self.control[i]),
            None => 0,
        };
        let hdr = &mut self.msgs[i].msg_hdr;
        hdr.msg_name = name.as_mut_ptr().cast();
        hdr.msg_namelen = name.len() as libc::socklen_t;
        hdr.msg_iov = &mut self.iovs[i];
        hdr.msg_iovlen = 1;
        hdr.msg_control = if controllen == 0 {
            std::ptr::null_mut()
        } else {
            self.control[i].as_mut_ptr().cast()
        };
        hdr.msg_controllen = controllen as _;
        hdr.msg_flags = 0;
        self.rx_ns[i] = rx_ns;
        self.len += 1;
    }

    /// Forgets every queued reply without sending it (benchmarks only).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Sends every queued reply on `fd` and counts each one exactly once:
    /// `tx_packets`, `tx_dropped` (EAGAIN/ENOBUFS: the rest of the batch) or
    /// `tx_errors` (any other errno: that reply, then go on). Records the
    /// latency of each sent reply when the call returns.
    pub fn flush(&mut self, fd: RawFd, counters: &mut Counters, latency: &mut Histogram<u64>) {
        let mut i = 0;
        while i < self.len {
            // SAFETY: entries i..len were filled by `push`, whose caller keeps
            // names, payloads alive until now; iovecs and control live in self.
            match unsafe { mmsg::sendmmsg(fd, &mut self.msgs[i..self.len]) } {
                Ok(sent) => {
                    let now = realtime_ns();
                    for j in i..i + sent {
                        counters.tx_packets += 1;
                        counters.tx_bytes += self.iovs[j].iov_len as u64;
                        if self.rx_ns[j] != 0 {
                            record_latency(latency, self.rx_ns[j], now);
                        }
                    }
                    i += sent.max(1).min(self.len - i);
                    if sent == 0 {
                        counters.tx_errors += 1; // never seen; do not spin on it
                    }
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EAGAIN) | Some(libc::ENOBUFS) => {
                        counters.tx_dropped += (self.len - i) as u64;
                        i = self.len;
                    }
                    _ => {
                        crate::io::warn_tx_error(&e);
                        counters.tx_errors += 1;
                        i += 1;
                    }
                },
            }
        }
        self.len = 0;
    }
}
