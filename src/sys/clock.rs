//! Clocks, in the units the kernel's timestamps use.

/// CLOCK_REALTIME in nanoseconds: the clock of SO_TIMESTAMPNS.
#[inline]
pub fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    timespec_ns(ts.tv_sec, ts.tv_nsec)
}

/// A timespec as nanoseconds; times before 1970 read as 0.
#[inline]
pub fn timespec_ns(sec: i64, nsec: i64) -> u64 {
    (sec.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(nsec.max(0) as u64)
}
