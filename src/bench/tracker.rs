//! Per-flow accounting of sequence numbers: what was sent, what came back,
//! what timed out.
//!
//! Every sequence number sent ends in exactly one of `received` or `lost`:
//! received when its first intact echo is read before `send time +
//! timeout`, lost when that deadline passes first. Echoes that change nothing
//! are counted too: `duplicates` (a second copy of a received or late
//! sequence) and `late` (the first copy of a sequence already declared
//! lost; it stays lost). `reordered` counts received sequences lower than
//! the highest received so far on the flow. So at the end, per phase:
//! `sent == received + lost`, and `late <= lost`.
//!
//! State lives in a ring of one byte per sequence number (`cap` of them):
//! two bits of state and a six-bit generation tag, so a slot never needs
//! resetting. Senders keep every sequence in flight within `cap / 2` of the
//! oldest unresolved one ([`room`]); the other half keeps the outcome of
//! resolved sequences, so a late or duplicate echo up to `cap / 2` behind is
//! still recognised. An echo older than that is counted `late`.

use std::collections::VecDeque;

use super::header::Phase;

/// What one phase of the run counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseCounts {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub late: u64,
}

impl PhaseCounts {
    pub fn add(&mut self, o: &PhaseCounts) {
        self.sent += o.sent;
        self.received += o.received;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.late += o.late;
    }
}

/// What an echo turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// First copy, in time: counted received.
    Received { reordered: bool },
    /// Another copy of a sequence already received or already late.
    Duplicate,
    /// First copy of a sequence already declared lost.
    Late,
    /// A sequence number this flow cannot have sent yet.
    Unknown,
}

/// Sequence numbers a sender may still send on a flow whose oldest
/// unresolved sequence is `swept`, next sequence `next`, ring size `cap`.
pub fn room(swept: u64, next: u64, cap: u64) -> u64 {
    (swept + cap / 2).saturating_sub(next)
}

const RECEIVED: u8 = 1;
const LOST: u8 = 2;
const LOST_THEN_LATE: u8 = 3;

/// One batch of sends: every sequence below `end` not in an earlier record,
/// stamped `sent_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub end: u64,
    pub sent_ns: u64,
    pub phase: Phase,
}

/// The accounting of one flow.
#[derive(Debug)]
pub struct Tracker {
    slots: Vec<u8>,
    shift: u32,
    timeout_ns: u64,
    /// Every sequence below this is resolved (received or lost).
    swept: u64,
    /// Sequences below this were sent, as far as the records tell.
    sent_end: u64,
    /// Highest received sequence + 1 (0: none yet).
    max_received: u64,
    records: VecDeque<Record>,
    counts: [PhaseCounts; 2],
}

impl Tracker {
    /// A ring of `1 << cap_log2` sequences (at least 2^7); sequences time out
    /// `timeout_ns` after their send stamp.
    pub fn new(cap_log2: u32, timeout_ns: u64) -> Tracker {
        let shift = cap_log2.clamp(7, 40);
        Tracker {
            slots: vec![0; 1 << shift],
            shift,
            timeout_ns,
            swept: 0,
            sent_end: 0,
            max_received: 0,
            records: VecDeque::new(),
            counts: [PhaseCounts::default(); 2],
        }
    }

    pub fn cap(&self) -> u64 {
        1 << self.shift
    }

    pub fn counts(&self, phase: Phase) -> &PhaseCounts {
        &self.counts[phase as usize]
    }

    /// Oldest unresolved sequence.
    pub fn swept(&self) -> u64 {
        self.swept
    }

    /// Sent and neither received nor lost yet (closed loop's window).
    pub fn in_flight(&self) -> u64 {
        let [w, m] = &self.counts;
        (w.sent + m.sent).saturating_sub(w.received + m.received + w.lost + m.lost)
    }

    /// Every sequence sent has been received or declared lost.
    pub fn resolved(&self) -> bool {
        self.swept >= self.sent_end
    }

    /// When the oldest outstanding batch times out, if any is outstanding.
    pub fn next_deadline(&self) -> Option<u64> {
        self.records
            .front()
            .map(|r| r.sent_ns.saturating_add(self.timeout_ns))
    }

    fn tag(&self, seq: u64) -> u8 {
        (((seq >> self.shift) + 1) & 0x3f) as u8
    }

    fn index(&self, seq: u64) -> usize {
        (seq & (self.cap() - 1)) as usize
    }

    fn state(&self, seq: u64) -> Option<u8> {
        let s = self.slots[self.index(seq)];
        (s >> 2 == self.tag(seq)).then_some(s & 3)
    }

    fn set(&mut self, seq: u64, state: u8) {
        let i = self.index(seq);
        self.slots[i] = (self.tag(seq) << 2) | state;
    }

    /// Records that the sequences up to `r.end` were sent. Records arrive in
    /// order; an echo may be seen before its record (open loop).
    pub fn on_sent(&mut self, r: Record) {
        if r.end <= self.sent_end {
            return;
        }
        self.counts[r.phase as usize].sent += r.end - self.sent_end;
        self.sent_end = r.end;
        self.records.push_back(r);
    }

    /// Declares lost every sequence whose deadline is at or before `now_ns`
    /// and that has not been received. Returns how many it declared.
    pub fn sweep(&mut self, now_ns: u64) -> u64 {
        let mut lost = 0;
        self.advance();
        while let Some(&r) = self.records.front() {
            if r.end > self.swept && r.sent_ns.saturating_add(self.timeout_ns) > now_ns {
                break;
            }
            while self.swept < r.end {
                if self.state(self.swept).is_none() {
                    self.set(self.swept, LOST);
                    self.counts[r.phase as usize].lost += 1;
                    lost += 1;
                }
                self.swept += 1;
            }
            self.records.pop_front();
        }
        self.advance();
        lost
    }

    /// Declares lost everything still outstanding (the run was cut short).
    pub fn finish(&mut self) -> u64 {
        self.sweep(u64::MAX)
    }

    fn advance(&mut self) {
        while self.state(self.swept).is_some() {
            self.swept += 1;
        }
    }

    /// Accounts one intact echo of `seq`, sent in `phase`. Call
    /// [`Tracker::sweep`] with the receive time first, so that an echo read
    /// after its deadline is late, not received.
    pub fn on_echo(&mut self, seq: u64, phase: Phase) -> Echo {
        if seq >= self.swept + self.cap() / 2 {
            return Echo::Unknown;
        }
        let state = self.state(seq);
        let c = &mut self.counts[phase as usize];
        match state {
            None if seq >= self.swept => {
                c.received += 1;
                let reordered = seq + 1 < self.max_received;
                if reordered {
                    c.reordered += 1;
                }
                self.max_received = self.max_received.max(seq + 1);
                self.set(seq, RECEIVED);
                self.advance();
                Echo::Received { reordered }
            }
            // Resolved so long ago that its slot was reused.
            None => {
                c.late += 1;
                Echo::Late
            }
            Some(LOST) => {
                c.late += 1;
                self.set(seq, LOST_THEN_LATE);
                Echo::Late
            }
            Some(_) => {
                c.duplicates += 1;
                Echo::Duplicate
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Phase::{Measured, Warmup};

    const T: u64 = 1_000;

    fn rec(end: u64, sent_ns: u64, phase: Phase) -> Record {
        Record {
            end,
            sent_ns,
            phase,
        }
    }

    fn identity_holds(t: &Tracker) {
        for p in [Warmup, Measured] {
            let c = t.counts(p);
            assert_eq!(c.sent, c.received + c.lost, "{p:?}: {c:?}");
            assert!(c.late <= c.lost, "{p:?}: {c:?}");
        }
    }

    #[test]
    fn in_order_echoes_are_received_and_resolve_the_flow() {
        let mut t = Tracker::new(8, T);
        t.on_sent(rec(4, 10, Measured));
        assert_eq!((t.in_flight(), t.resolved()), (4, false));
        for s in 0..4 {
            assert_eq!(t.on_echo(s, Measured), Echo::Received { reordered: false });
        }
        assert_eq!((t.in_flight(), t.swept(), t.resolved()), (0, 4, true));
        assert_eq!(t.sweep(10 + T), 0);
        assert!(t.resolved());
        assert_eq!(
            t.counts(Measured),
            &PhaseCounts {
                sent: 4,
                received: 4,
                ..Default::default()
            }
        );
        identity_holds(&t);
    }

    #[test]
    fn missing_echoes_are_lost_at_their_deadline_and_late_after_it() {
        let mut t = Tracker::new(8, T);
        t.on_sent(rec(3, 100, Measured));
        t.on_sent(rec(6, 200, Measured));
        t.on_echo(0, Measured);
        t.on_echo(4, Measured);
        assert_eq!(t.next_deadline(), Some(100 + T));
        assert_eq!(t.sweep(100 + T - 1), 0, "not yet");
        assert_eq!(t.sweep(100 + T), 2, "1 and 2");
        assert_eq!(t.swept(), 3);
        assert_eq!(t.on_echo(2, Measured), Echo::Late);
        assert_eq!(
            t.on_echo(2, Measured),
            Echo::Duplicate,
            "a second late copy"
        );
        assert_eq!(t.on_echo(5, Measured), Echo::Received { reordered: false });
        assert_eq!(t.sweep(200 + T), 1, "3");
        assert_eq!(t.swept(), 6);
        assert!(t.resolved());
        let c = t.counts(Measured);
        assert_eq!(
            (c.sent, c.received, c.lost, c.late, c.duplicates),
            (6, 3, 3, 1, 1)
        );
        identity_holds(&t);
    }

    #[test]
    fn duplicates_and_reordering_are_counted_once_each() {
        let mut t = Tracker::new(8, T);
        t.on_sent(rec(5, 0, Measured));
        assert_eq!(t.on_echo(1, Measured), Echo::Received { reordered: false });
        assert_eq!(t.on_echo(0, Measured), Echo::Received { reordered: true });
        assert_eq!(t.on_echo(4, Measured), Echo::Received { reordered: false });
        assert_eq!(t.on_echo(2, Measured), Echo::Received { reordered: true });
        assert_eq!(t.on_echo(3, Measured), Echo::Received { reordered: true });
        assert_eq!(t.on_echo(3, Measured), Echo::Duplicate);
        assert_eq!(
            t.on_echo(0, Measured),
            Echo::Duplicate,
            "behind the sweep, still known"
        );
        let c = t.counts(Measured);
        assert_eq!(
            (c.received, c.reordered, c.duplicates, c.lost),
            (5, 3, 2, 0)
        );
        identity_holds(&t);
    }

    #[test]
    fn phases_are_counted_apart() {
        let mut t = Tracker::new(8, T);
        t.on_sent(rec(2, 0, Warmup));
        t.on_sent(rec(5, 50, Measured));
        t.on_echo(0, Warmup);
        t.on_echo(2, Measured);
        t.on_echo(3, Measured);
        t.sweep(u64::MAX / 2);
        assert_eq!(
            t.counts(Warmup),
            &PhaseCounts {
                sent: 2,
                received: 1,
                lost: 1,
                ..Default::default()
            }
        );
        assert_eq!(
            t.counts(Measured),
            &PhaseCounts {
                sent: 3,
                received: 2,
                lost: 1,
                ..Default::default()
            }
        );
        identity_holds(&t);
    }

    #[test]
    fn an_echo_may_come_before_its_record() {
        let mut t = Tracker::new(8, T);
        assert_eq!(t.on_echo(0, Measured), Echo::Received { reordered: false });
        assert_eq!(t.in_flight(), 0);
        t.on_sent(rec(2, 0, Measured));
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.sweep(T), 1);
        assert!(t.resolved());
        identity_holds(&t);
    }

    #[test]
    fn sequences_beyond_the_window_are_unknown_and_change_nothing() {
        let mut t = Tracker::new(8, T);
        assert_eq!(room(0, 0, t.cap()), 128);
        assert_eq!(t.on_echo(128, Measured), Echo::Unknown);
        assert_eq!(t.on_echo(u64::MAX - 5, Measured), Echo::Unknown);
        assert_eq!(t.counts(Measured), &PhaseCounts::default());
    }

    #[test]
    fn the_ring_wraps_many_generations_without_false_matches() {
        // 256 slots, 128 in flight at most; 100 generations of 128 sends, one
        // in 7 never echoed, one in 11 echoed twice, some echoed late.
        let mut t = Tracker::new(8, T);
        let mut now = 0;
        let (mut lost, mut dups) = (0, 0);
        for batch in 0..200u64 {
            let start = batch * 128;
            assert_eq!(room(t.swept(), start, t.cap()), 128, "batch {batch}");
            t.on_sent(rec(start + 128, now, Measured));
            for s in start..start + 128 {
                if s % 7 == 0 {
                    lost += 1;
                    continue;
                }
                assert_eq!(
                    t.on_echo(s, Measured),
                    Echo::Received { reordered: false },
                    "seq {s}"
                );
                if s % 11 == 0 {
                    dups += 1;
                    assert_eq!(t.on_echo(s, Measured), Echo::Duplicate);
                }
            }
            now += T;
            t.sweep(now);
            if start >= 128 {
                // The previous batch's lost ones are still remembered.
                assert_eq!(
                    t.on_echo(start - 128 + 7 - (start - 128) % 7, Measured),
                    Echo::Late
                );
            }
        }
        assert!(t.resolved());
        let c = *t.counts(Measured);
        assert_eq!(
            (c.sent, c.lost, c.duplicates, c.late),
            (200 * 128, lost, dups, 199)
        );
        // Far behind the ring: counted late, not mistaken for a fresh sequence.
        assert_eq!(t.on_echo(1, Measured), Echo::Late);
        identity_holds(&t);
    }

    #[test]
    fn finish_declares_everything_outstanding_lost() {
        let mut t = Tracker::new(8, T);
        t.on_sent(rec(10, 0, Measured));
        t.on_echo(3, Measured);
        assert_eq!(t.finish(), 9);
        assert!(t.resolved());
        identity_holds(&t);
    }
}
