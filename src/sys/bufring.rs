//! Provided buffer ring memory (IORING_REGISTER_PBUF_RING).
//!
//! Two anonymous mappings: the ring of `io_uring_buf` entries the kernel
//! reads buffer addresses from, and the buffers themselves. The kernel picks
//! a buffer per datagram and reports its id in the completion; we give it
//! back with [`BufRing::recycle`] and make the returns visible with
//! [`BufRing::publish`] (one Release store of the tail per batch).

use std::{
    io,
    ptr::NonNull,
    sync::atomic::{AtomicU16, Ordering},
};

use io_uring::types::BufRingEntry;

/// An anonymous, page-aligned, zeroed mapping.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: an anonymous private mapping with no address hint has no
        // preconditions; failure is reported as MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: NonNull::new(ptr.cast()).expect("mmap never returns null on success"),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping we own and nobody uses any more.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A buffer the kernel handed over in a completion: ours until recycled.
///
/// Not `Clone`: [`BufRing::recycle`] consumes it, so safe code cannot give
/// one buffer back twice (which would let two completions share it).
#[derive(Debug)]
pub struct BufId(u16);

/// A provided buffer ring with `entries` buffers of `buf_size` bytes.
pub struct BufRing {
    ring: Mapping,
    bufs: Mapping,
    entries: u16,
    buf_size: usize,
    tail: u16,
}

impl BufRing {
    /// Maps the ring and the buffers and hands every buffer to the ring.
    /// `entries` must be a power of two (checked by the CLI; asserted here).
    pub fn new(entries: u16, buf_size: usize) -> io::Result<Self> {
        assert!(
            entries.is_power_of_two(),
            "buffer ring entries must be a power of two"
        );
        let ring = Mapping::new(entries as usize * std::mem::size_of::<BufRingEntry>())?;
        let bufs = Mapping::new(entries as usize * buf_size)?;
        let mut r = BufRing {
            ring,
            bufs,
            entries,
            buf_size,
            tail: 0,
        };
        for bid in 0..entries {
            r.give(bid);
        }
        r.publish();
        Ok(r)
    }

    /// Address to register with `register_buf_ring_with_flags`.
    pub fn ring_addr(&self) -> u64 {
        self.ring.ptr.as_ptr() as u64
    }

    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// Takes buffer `bid` from a completion as a token. Panics if `bid` is
    /// out of range (the kernel never reports that).
    ///
    /// # Safety
    /// `bid` must be the buffer id of a completion of a request that selected
    /// from this ring (`cqueue::buffer_select`), claimed once: the kernel
    /// hands a buffer over once per recycle.
    pub unsafe fn claim(&self, bid: u16) -> BufId {
        assert!(bid < self.entries, "buffer id {bid} out of range");
        BufId(bid)
    }

    /// The first `len` bytes of buffer `id`, which the kernel has handed
    /// over and which we have not yet recycled (the token says so).
    ///
    /// Panics if `len` is out of range: a bug here, not bad input.
    pub fn buf_mut(&mut self, id: &BufId, len: usize) -> &mut [u8] {
        let bid = id.0;
        assert!(
            bid < self.entries && len <= self.buf_size,
            "buffer {bid}/{len} out of range"
        );
        // SAFETY: bounds checked above; the buffer belongs to us (not the
        // kernel) between its completion and its recycling, and `&mut self`
        // prevents a second live slice from this API.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.bufs.ptr.as_ptr().add(bid as usize * self.buf_size),
                len,
            )
        }
    }

    /// Returns buffer `id` to the ring (visible to the kernel after `publish`).
    #[inline]
    pub fn recycle(&mut self, id: BufId) {
        self.give(id.0);
    }

    /// Puts buffer `bid` in the ring's next entry.
    #[inline]
    fn give(&mut self, bid: u16) {
        assert!(bid < self.entries, "buffer id {bid} out of range");
        let slot = (self.tail & (self.entries - 1)) as usize;
        // SAFETY: slot < entries, so the entry lies inside the ring mapping;
        // the kernel only reads entries between its head and our published tail.
        let entry = unsafe { &mut *self.ring.ptr.as_ptr().cast::<BufRingEntry>().add(slot) };
        // SAFETY: bid < entries, so the address is inside the buffer mapping.
        let addr = unsafe { self.bufs.ptr.as_ptr().add(bid as usize * self.buf_size) };
        entry.set_addr(addr as u64);
        entry.set_len(self.buf_size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes every recycled buffer to the kernel.
    #[inline]
    pub fn publish(&self) {
        // SAFETY: the ring base is a valid, 8-aligned mapping of at least one
        // entry; the tail is the u16 at offset 14 of entry 0, which the kernel
        // reads atomically.
        let tail =
            unsafe { &*BufRingEntry::tail(self.ring.ptr.as_ptr().cast()).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}
