//! Who gets an answer: the source policy, checked for every datagram before
//! any reply is built.
//!
//! An echo service is the textbook amplifier and loop-maker: one spoofed
//! datagram whose source is another reflector's port ping-pongs between the
//! two forever; a source of 0.0.0.0 or :: sends the reply to this host
//! itself (a self-loop, or a relay into whatever local service listens on
//! that port); a broadcast or multicast destination turns one request into
//! a reply from every host on the segment. So, by default, nothing is
//! answered whose source is unspecified, broadcast or multicast, whose
//! source port is 0, a reflector's port (ours, or one announced by another
//! reflector of this host, see [`crate::registry`]) or a well-known
//! reflecting service's port, or that was sent to a broadcast or multicast
//! address. On top of that, `--allow` restricts sources to a list of
//! networks and `--max-pps-per-source` rate-limits each source address.
//!
//! Pure code, no system calls: everything is precomputed from the
//! configuration, so the per-datagram cost is a few compares and one bit
//! test. The set of reflector ports can change at run time (the registry);
//! workers pick up a new one through [`SharedPorts`].

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use crate::reflect::NoReply;

/// Source ports of services that answer whatever they receive (or answer
/// more than they receive): echo 7, daytime 13, qotd 17, chargen 19, time
/// 37, ntp 123, ssdp 1900, memcached 11211. A request "from" one of them is
/// a spoofed attempt to make two services talk to each other.
pub const DEFAULT_SERVICE_PORTS: [u16; 8] = [7, 13, 17, 19, 37, 123, 1900, 11211];

/// A set of UDP ports: one bit per port (8 KiB).
#[derive(Clone, PartialEq, Eq)]
pub struct PortSet {
    bits: Box<[u64; 1024]>,
}

impl std::fmt::Debug for PortSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Default for PortSet {
    fn default() -> Self {
        PortSet {
            bits: Box::new([0; 1024]),
        }
    }
}

impl PortSet {
    pub fn from_ports(ports: impl IntoIterator<Item = u16>) -> Self {
        let mut s = PortSet::default();
        for p in ports {
            s.insert(p);
        }
        s
    }

    pub fn insert(&mut self, port: u16) {
        self.bits[usize::from(port >> 6)] |= 1 << (port & 63);
    }

    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.bits[usize::from(port >> 6)] & (1 << (port & 63)) != 0
    }

    pub fn union(&self, other: &PortSet) -> PortSet {
        let mut s = self.clone();
        for (a, b) in s.bits.iter_mut().zip(other.bits.iter()) {
            *a |= b;
        }
        s
    }

    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=u16::MAX).filter(|&p| self.contains(p))
    }
}

/// What the workers test a source port against: every refused port in one
/// set (one bit test per datagram), and which of them are reflector ports
/// (looked at only on a hit, to name the reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortTable {
    refused: PortSet,
    reflector: PortSet,
}

impl PortTable {
    pub fn new(service: &PortSet, reflector: &PortSet) -> Self {
        PortTable {
            refused: service.union(reflector),
            reflector: reflector.clone(),
        }
    }

    /// The reason a datagram from `port` gets no answer, if any.
    #[inline]
    fn check(&self, port: u16) -> Option<NoReply> {
        if !self.refused.contains(port) {
            None
        } else if self.reflector.contains(port) {
            Some(NoReply::SourceReflectorPort)
        } else {
            Some(NoReply::SourceServicePort)
        }
    }
}

/// The current [`PortTable`], swapped by one thread (the runtime, when the
/// registry changes) and picked up by the workers before each datagram: a
/// generation counter read with one relaxed load, and the table itself
/// behind a lock taken only when the generation moved.
#[derive(Debug)]
pub struct SharedPorts {
    generation: AtomicU64,
    table: Mutex<Arc<PortTable>>,
    service: PortSet,
    own: PortSet,
}

impl SharedPorts {
    /// `service`: the refused well-known ports; `own`: this process's ports.
    pub fn new(service: PortSet, own: PortSet) -> Arc<SharedPorts> {
        let table = Arc::new(PortTable::new(&service, &own));
        Arc::new(SharedPorts {
            generation: AtomicU64::new(0),
            table: Mutex::new(table),
            service,
            own,
        })
    }

    /// Replaces the ports of the other reflectors of this host. A no-op when
    /// nothing changed.
    pub fn set_others(&self, others: &PortSet) {
        let table = PortTable::new(&self.service, &self.own.union(others));
        let mut cur = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if **cur != table {
            *cur = Arc::new(table);
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    fn load(&self) -> (u64, Arc<PortTable>) {
        let generation = self.generation.load(Ordering::Acquire);
        let table = Arc::clone(&self.table.lock().unwrap_or_else(|e| e.into_inner()));
        (generation, table)
    }
}

/// An IPv4 or IPv6 network, as given to `--allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "'{s}' is not ADDR/PREFIX (examples: 198.51.100.0/24, 2001:db8::/32, 127.0.0.1)"
            )
        };
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p.parse::<u8>().map_err(|_| bad())?,
        };
        if prefix > max {
            return Err(format!("'{s}': the prefix length must be at most {max}"));
        }
        Ok(Cidr { addr, prefix })
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// `--allow`, precomputed as (network, mask) pairs per family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl AllowList {
    pub fn new(cidrs: &[Cidr]) -> Self {
        let mut l = AllowList::default();
        for c in cidrs {
            match c.addr {
                IpAddr::V4(a) => {
                    let m = mask32(c.prefix);
                    l.v4.push((u32::from(a) & m, m));
                }
                IpAddr::V6(a) => {
                    let m = mask128(c.prefix);
                    l.v6.push((u128::from(a) & m, m));
                }
            }
        }
        l
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    fn allows_v4(&self, a: u32) -> bool {
        self.v4.iter().any(|&(net, m)| a & m == net)
    }

    fn allows_v6(&self, a: u128) -> bool {
        self.v6.iter().any(|&(net, m)| a & m == net)
    }
}

/// The policy's configuration, validated from the flags.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Refused source ports of reflecting services (`--refuse-source-ports`).
    pub service_ports: PortSet,
    /// Only these sources get replies, when not empty (`--allow`).
    pub allow: AllowList,
    /// Answer datagrams sent to a broadcast or multicast address.
    pub answer_broadcast: bool,
    /// Per-source token bucket (`--max-pps-per-source`).
    pub max_pps_per_source: Option<u32>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            service_ports: PortSet::from_ports(DEFAULT_SERVICE_PORTS),
            allow: AllowList::default(),
            answer_broadcast: false,
            max_pps_per_source: None,
        }
    }
}

/// Where a datagram was sent, as far as the policy cares. From IP_PKTINFO
/// (`ipi_addr`, the header's destination, and `ipi_spec_dst`, the local
/// address the kernel would answer from) or IPV6_PKTINFO (`ipi6_addr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// No pktinfo: a socket bound to one unicast address.
    Unknown,
    V4 {
        header: [u8; 4],
        spec_dst: [u8; 4],
    },
    V6 {
        header: [u8; 16],
    },
}

impl Destination {
    /// The refusal reason of a broadcast or multicast destination.
    #[inline]
    fn group(self) -> Option<NoReply> {
        match self {
            Destination::Unknown => None,
            Destination::V4 { header, spec_dst } => {
                if Ipv4Addr::from(header).is_multicast() {
                    Some(NoReply::ToMulticast)
                } else if header == [255; 4]
                    // fib_compute_spec_dst (net/ipv4/fib_frontend.c) returns
                    // the header's destination for a local unicast route
                    // only; for a broadcast it picks an address of the
                    // interface, so they differ exactly for broadcasts.
                    || (spec_dst != [0; 4] && header != spec_dst)
                {
                    Some(NoReply::ToBroadcast)
                } else {
                    None
                }
            }
            Destination::V6 { header } => (header[0] == 0xff).then_some(NoReply::ToMulticast),
        }
    }
}

/// Entries of a worker's rate-limit table: bounded memory (32 bytes each).
/// Sources that hash to the same slot share it: a newcomer takes the slot
/// over with a full bucket.
pub const RATE_SLOTS: usize = 4096;

#[derive(Clone, Copy, Default)]
struct Bucket {
    source: u128,
    /// Tokens in millionths of a datagram.
    tokens: u64,
    last_ns: u64,
}

/// A token bucket per source address: `rate` datagrams a second, bursts of
/// up to `rate` (one second's worth).
struct RateLimiter {
    /// Datagrams per second (tokens are counted in millionths, `TOKEN`).
    rate: u64,
    slots: Box<[Bucket]>,
}

const TOKEN: u64 = 1_000_000;

impl RateLimiter {
    fn new(rate: u32) -> Self {
        RateLimiter {
            rate: u64::from(rate.max(1)),
            slots: vec![Bucket::default(); RATE_SLOTS].into_boxed_slice(),
        }
    }

    /// Takes one token for `source` at `now_ns`; false when none is left.
    fn take(&mut self, source: u128, now_ns: u64) -> bool {
        let h = (source as u64 ^ (source >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let b = &mut self.slots[(h >> 52) as usize % RATE_SLOTS];
        let full = self.rate * TOKEN;
        if b.source != source || b.last_ns == 0 {
            *b = Bucket {
                source,
                tokens: full,
                last_ns: now_ns.max(1),
            };
        } else {
            // A clock that steps back refills nothing.
            let dt = now_ns.saturating_sub(b.last_ns);
            // rate * TOKEN per second = rate / 1000 millionths per ns.
            let gained = (u128::from(dt) * u128::from(self.rate) / 1000).min(u128::from(full));
            b.tokens = (b.tokens + gained as u64).min(full);
            b.last_ns = b.last_ns.max(now_ns);
        }
        if b.tokens >= TOKEN {
            b.tokens -= TOKEN;
            true
        } else {
            false
        }
    }
}

/// One worker's copy of the policy (the rate limiter's table is per worker).
pub struct Policy {
    shared: Arc<SharedPorts>,
    generation: u64,
    ports: Arc<PortTable>,
    allow: AllowList,
    answer_broadcast: bool,
    rate: Option<RateLimiter>,
}

impl Policy {
    pub fn new(cfg: &PolicyConfig, shared: Arc<SharedPorts>) -> Self {
        let (generation, ports) = shared.load();
        Policy {
            shared,
            generation,
            ports,
            allow: cfg.allow.clone(),
            answer_broadcast: cfg.answer_broadcast,
            rate: cfg.max_pps_per_source.map(RateLimiter::new),
        }
    }

    /// Picks up a new port table if the runtime swapped one in: one relaxed
    /// load of a rarely written cache line when nothing changed.
    #[inline]
    pub fn refresh(&mut self) {
        if self.shared.generation.load(Ordering::Relaxed) != self.generation {
            (self.generation, self.ports) = self.shared.load();
        }
    }

    /// Whether the rate limiter wants `now_ns` (otherwise it is not read).
    #[inline]
    pub fn needs_clock(&self) -> bool {
        self.rate.is_some()
    }

    /// The reason a datagram from `source` to `dst` gets no reply, or `None`
    /// when it may be answered. `source` is `None` when the kernel gave no
    /// readable address. `now_ns` matters only with a rate limit.
    #[inline]
    pub fn check(
        &mut self,
        source: Option<SocketAddr>,
        dst: Destination,
        now_ns: u64,
    ) -> Option<NoReply> {
        let Some(source) = source else {
            return Some(NoReply::SourceUnspecified);
        };
        // A v4-mapped IPv6 source is judged as the IPv4 address it carries.
        let ip = match source.ip() {
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(a),
            },
            v4 => v4,
        };
        let key = match ip {
            IpAddr::V4(a) => {
                if a.is_unspecified() {
                    return Some(NoReply::SourceUnspecified);
                }
                if a.is_multicast() {
                    return Some(NoReply::SourceMulticast);
                }
                if a.is_broadcast() {
                    return Some(NoReply::SourceBroadcast);
                }
                u128::from(a.to_ipv6_mapped())
            }
            IpAddr::V6(a) => {
                if a.is_unspecified() {
                    return Some(NoReply::SourceUnspecified);
                }
                if a.is_multicast() {
                    return Some(NoReply::SourceMulticast);
                }
                u128::from(a)
            }
        };
        let port = source.port();
        if port == 0 {
            return Some(NoReply::SourcePortZero);
        }
        if let Some(r) = self.ports.check(port) {
            return Some(r);
        }
        if !self.answer_broadcast {
            if let Some(r) = dst.group() {
                return Some(r);
            }
        }
        if !self.allow.is_empty() {
            let allowed = match ip {
                IpAddr::V4(a) => self.allow.allows_v4(u32::from(a)),
                IpAddr::V6(a) => self.allow.allows_v6(u128::from(a)),
            };
            if !allowed {
                return Some(NoReply::NotAllowed);
            }
        }
        if let Some(rl) = &mut self.rate {
            if !rl.take(key, now_ns) {
                return Some(NoReply::RateLimited);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn policy(cfg: &PolicyConfig, own: &[u16]) -> Policy {
        let shared = SharedPorts::new(
            cfg.service_ports.clone(),
            PortSet::from_ports(own.iter().copied()),
        );
        Policy::new(cfg, shared)
    }

    fn src(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    const LOCAL4: Destination = Destination::V4 {
        header: [198, 51, 100, 1],
        spec_dst: [198, 51, 100, 1],
    };

    #[test]
    fn ordinary_sources_are_answered() {
        let mut p = policy(&PolicyConfig::default(), &[7007]);
        for s in [
            "198.51.100.2:40000",
            "127.0.0.1:1024",
            "[2001:db8::2]:5353",
            "[::1]:65535",
        ] {
            assert_eq!(p.check(src(s), LOCAL4, 0), None, "{s}");
            assert_eq!(p.check(src(s), Destination::Unknown, 0), None, "{s}");
        }
    }

    #[test]
    fn every_refusal_names_its_rule() {
        let mut p = policy(&PolicyConfig::default(), &[7007, 862]);
        let cases = [
            (None, NoReply::SourceUnspecified),
            (src("0.0.0.0:7007"), NoReply::SourceUnspecified),
            (src("[::]:7007"), NoReply::SourceUnspecified),
            (src("[::ffff:0.0.0.0]:5000"), NoReply::SourceUnspecified),
            (src("224.0.0.1:5000"), NoReply::SourceMulticast),
            (src("[ff02::1]:5000"), NoReply::SourceMulticast),
            (src("[::ffff:239.1.1.1]:5000"), NoReply::SourceMulticast),
            (src("255.255.255.255:5000"), NoReply::SourceBroadcast),
            (src("198.51.100.2:0"), NoReply::SourcePortZero),
            (src("198.51.100.2:7007"), NoReply::SourceReflectorPort),
            (src("[2001:db8::2]:862"), NoReply::SourceReflectorPort),
            (src("198.51.100.2:7"), NoReply::SourceServicePort),
            (src("198.51.100.2:19"), NoReply::SourceServicePort),
            (src("[2001:db8::2]:11211"), NoReply::SourceServicePort),
            (src("198.51.100.2:123"), NoReply::SourceServicePort),
        ];
        for (s, want) in cases {
            assert_eq!(p.check(s, LOCAL4, 0), Some(want), "{s:?}");
        }
    }

    #[test]
    fn group_destinations_are_refused_unless_asked_for() {
        let bcast = Destination::V4 {
            header: [255; 4],
            spec_dst: [198, 51, 100, 1],
        };
        let subnet = Destination::V4 {
            header: [198, 51, 100, 255],
            spec_dst: [198, 51, 100, 1],
        };
        let mcast4 = Destination::V4 {
            header: [239, 1, 2, 3],
            spec_dst: [198, 51, 100, 1],
        };
        let mcast6 = Destination::V6 {
            header: "ff02::1".parse::<Ipv6Addr>().unwrap().octets(),
        };
        let uni6 = Destination::V6 {
            header: "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets(),
        };
        let from = src("198.51.100.2:40000");
        let mut p = policy(&PolicyConfig::default(), &[]);
        assert_eq!(p.check(from, bcast, 0), Some(NoReply::ToBroadcast));
        assert_eq!(p.check(from, subnet, 0), Some(NoReply::ToBroadcast));
        assert_eq!(p.check(from, mcast4, 0), Some(NoReply::ToMulticast));
        assert_eq!(p.check(from, mcast6, 0), Some(NoReply::ToMulticast));
        assert_eq!(p.check(from, uni6, 0), None);
        let mut open = policy(
            &PolicyConfig {
                answer_broadcast: true,
                ..Default::default()
            },
            &[],
        );
        for d in [bcast, subnet, mcast4, mcast6] {
            assert_eq!(open.check(from, d, 0), None, "{d:?}");
        }
    }

    #[test]
    fn the_service_port_list_can_be_changed() {
        let cfg = PolicyConfig {
            service_ports: PortSet::from_ports([53]),
            ..Default::default()
        };
        let mut p = policy(&cfg, &[]);
        assert_eq!(p.check(src("198.51.100.2:7"), LOCAL4, 0), None);
        assert_eq!(
            p.check(src("198.51.100.2:53"), LOCAL4, 0),
            Some(NoReply::SourceServicePort)
        );
    }

    #[test]
    fn allow_lists_take_both_families_and_v4_mapped_sources() {
        let cidrs: Vec<Cidr> = ["198.51.100.0/25", "2001:db8:1::/48", "127.0.0.1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let cfg = PolicyConfig {
            allow: AllowList::new(&cidrs),
            ..Default::default()
        };
        let mut p = policy(&cfg, &[]);
        for ok in [
            "198.51.100.127:5000",
            "[::ffff:198.51.100.3]:5000",
            "[2001:db8:1:ffff::9]:5000",
            "127.0.0.1:5000",
        ] {
            assert_eq!(p.check(src(ok), LOCAL4, 0), None, "{ok}");
        }
        for no in [
            "198.51.100.128:5000",
            "127.0.0.2:5000",
            "[2001:db8:2::9]:5000",
            "[::1]:5000",
        ] {
            assert_eq!(
                p.check(src(no), LOCAL4, 0),
                Some(NoReply::NotAllowed),
                "{no}"
            );
        }
        assert!("10.0.0.0/33".parse::<Cidr>().unwrap_err().contains("32"));
        assert!("nope/8".parse::<Cidr>().is_err());
        let all: Cidr = "::/0".parse().unwrap();
        let mut p = policy(
            &PolicyConfig {
                allow: AllowList::new(&[all]),
                ..Default::default()
            },
            &[],
        );
        assert_eq!(p.check(src("[2001:db8::5]:5000"), LOCAL4, 0), None);
        assert_eq!(
            p.check(src("198.51.100.5:5000"), LOCAL4, 0),
            Some(NoReply::NotAllowed)
        );
    }

    #[test]
    fn rate_limit_refills_at_the_configured_rate_per_source() {
        let cfg = PolicyConfig {
            max_pps_per_source: Some(10),
            ..Default::default()
        };
        let mut p = policy(&cfg, &[]);
        let (a, b) = (src("198.51.100.2:5000"), src("198.51.100.3:5000"));
        let t0 = 1_000_000_000u64;
        let answered = (0..25).filter(|_| p.check(a, LOCAL4, t0).is_none()).count();
        assert_eq!(answered, 10, "a burst of one second's worth");
        assert_eq!(p.check(a, LOCAL4, t0), Some(NoReply::RateLimited));
        // Another source has its own bucket.
        assert_eq!(p.check(b, LOCAL4, t0), None);
        // 100 ms later: one more token.
        assert_eq!(p.check(a, LOCAL4, t0 + 100_000_000), None);
        assert_eq!(
            p.check(a, LOCAL4, t0 + 100_000_000),
            Some(NoReply::RateLimited)
        );
        // A clock step backwards gives nothing.
        assert_eq!(p.check(a, LOCAL4, 5), Some(NoReply::RateLimited));
        // Another port of the same address shares the bucket.
        assert_eq!(
            p.check(src("198.51.100.2:5001"), LOCAL4, t0 + 100_000_000),
            Some(NoReply::RateLimited)
        );
        // Refused datagrams spend no token.
        assert_eq!(
            p.check(src("198.51.100.2:7"), LOCAL4, t0 + 200_000_000),
            Some(NoReply::SourceServicePort)
        );
        assert_eq!(p.check(a, LOCAL4, t0 + 200_000_000), None);
    }

    #[test]
    fn a_new_port_table_reaches_the_worker() {
        let cfg = PolicyConfig::default();
        let shared = SharedPorts::new(cfg.service_ports.clone(), PortSet::from_ports([7007]));
        let mut p = Policy::new(&cfg, Arc::clone(&shared));
        let s = src("127.0.0.1:862");
        assert_eq!(p.check(s, Destination::Unknown, 0), None);
        shared.set_others(&PortSet::from_ports([862]));
        p.refresh();
        assert_eq!(
            p.check(s, Destination::Unknown, 0),
            Some(NoReply::SourceReflectorPort)
        );
        let g = shared.generation.load(Ordering::Relaxed);
        shared.set_others(&PortSet::from_ports([862]));
        assert_eq!(shared.generation.load(Ordering::Relaxed), g, "unchanged");
        shared.set_others(&PortSet::default());
        p.refresh();
        assert_eq!(p.check(s, Destination::Unknown, 0), None);
        // Our own port stays.
        assert_eq!(
            p.check(src("127.0.0.1:7007"), Destination::Unknown, 0),
            Some(NoReply::SourceReflectorPort)
        );
    }
}
