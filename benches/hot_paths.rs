//! The pure hot paths: decoding what the kernel wrote into a completion,
//! building a reply batch with its cmsgs, recording a latency sample, and
//! what a flush pays for live latency (crate::live): nothing asked, and a
//! hand-over.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use udp_reflector::{
    io::tx::TxBatch,
    live::LiveSlot,
    policy::{AllowList, Destination, Policy, PolicyConfig, PortSet, SharedPorts},
    reflect::{reflect, Mode, RxMeta},
    stats::{new_latency_histogram, record_latency},
    sys::cmsg::{self, PktInfo},
};

/// The control area of a typical IPv4 datagram: pktinfo, SO_RXQ_OVFL and
/// SCM_TIMESTAMPNS, laid out as the kernel does.
fn typical_control() -> Vec<u8> {
    fn put(out: &mut Vec<u8>, level: i32, kind: i32, data: &[u8]) {
        let hdr = std::mem::size_of::<libc::cmsghdr>();
        let start = out.len();
        out.resize(start + cmsg::space(data.len()), 0);
        out[start..start + 8].copy_from_slice(&(hdr + data.len()).to_ne_bytes());
        out[start + 8..start + 12].copy_from_slice(&level.to_ne_bytes());
        out[start + 12..start + 16].copy_from_slice(&kind.to_ne_bytes());
        out[start + hdr..start + hdr + data.len()].copy_from_slice(data);
    }
    let mut v = Vec::new();
    put(
        &mut v,
        libc::IPPROTO_IP,
        libc::IP_PKTINFO,
        &[0, 0, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1],
    );
    put(
        &mut v,
        libc::SOL_SOCKET,
        libc::SO_RXQ_OVFL,
        &3u32.to_ne_bytes(),
    );
    let mut ts = 1_700_000_000i64.to_ne_bytes().to_vec();
    ts.extend_from_slice(&123_456_789i64.to_ne_bytes());
    put(&mut v, libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &ts);
    v
}

fn decode_completion(c: &mut Criterion) {
    let control = typical_control();
    let mut g = c.benchmark_group("cmsg_decode_pktinfo_ovfl_timestamp");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode", |b| b.iter(|| cmsg::decode(black_box(&control))));
    g.finish();
}

fn build_reply_batch(c: &mut Criterion) {
    const BATCH: usize = 64;
    let mut names = vec![[0u8; 16]; BATCH];
    let mut payloads = vec![[0u8; 64]; BATCH];
    let pi = PktInfo::V4 {
        spec_dst: [127, 0, 0, 1],
    };
    let mut batch = TxBatch::new(BATCH, true);
    let mut g = c.benchmark_group("reply_batch_build_batch_64_size_64");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("echo_with_pktinfo", |b| {
        b.iter(|| {
            for (name, payload) in names.iter_mut().zip(payloads.iter_mut()) {
                let n = match reflect(Mode::Echo, &RxMeta::default(), payload, 64) {
                    udp_reflector::reflect::Verdict::Reply(n) => n,
                    udp_reflector::reflect::Verdict::NoReply(_) => 0,
                };
                // SAFETY: `payloads` outlives the batch, which is cleared
                // (never flushed) after each iteration.
                unsafe { batch.push(name, &mut payload[..n], Some(&pi), 1) };
            }
            let full = batch.is_full();
            batch.clear();
            black_box(full)
        })
    });
    g.finish();
}

fn record_latency_sample(c: &mut Criterion) {
    let mut h = new_latency_histogram();
    let mut g = c.benchmark_group("latency_record_sample");
    g.throughput(Throughput::Elements(1));
    let mut t = 1_000u64;
    g.bench_function("hdr_ns_3_sigfig", |b| {
        b.iter(|| {
            t = t
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            record_latency(&mut h, 0, black_box(t % 1_000_000));
        })
    });
    g.finish();
}

/// A flush's share of live latency: when nobody asked (every flush), and a
/// hand-over of 1000 samples (at most once per collection: per interval
/// line or scrape).
fn live_latency_flush(c: &mut Criterion) {
    let slot = LiveSlot::default();
    let mut local = new_latency_histogram();
    let mut g = c.benchmark_group("live_latency_after_flush");
    g.throughput(Throughput::Elements(1));
    g.bench_function("not_asked", |b| {
        b.iter(|| slot.after_flush(black_box(&mut local)))
    });
    g.bench_function("hand_over_1000_samples", |b| {
        b.iter(|| {
            for i in 0..1000u64 {
                record_latency(&mut local, 0, 5_000 + i * 97);
            }
            slot.request();
            slot.after_flush(black_box(&mut local));
        })
    });
    g.finish();
}

/// The source policy's verdict on an ordinary IPv4 source: the default
/// rules, then with a 4-network allow list and a rate limit on top.
fn policy_check(c: &mut Criterion) {
    let shared = || {
        SharedPorts::new(
            PolicyConfig::default().service_ports,
            PortSet::from_ports([7007]),
        )
    };
    let dst = Destination::V4 {
        header: [198, 51, 100, 1],
        spec_dst: [198, 51, 100, 1],
    };
    let sources: Vec<_> = (0..64u16)
        .map(|i| {
            Some(std::net::SocketAddr::from((
                [198, 51, 100, 2 + i as u8],
                40000 + i,
            )))
        })
        .collect();
    let mut g = c.benchmark_group("policy_check_v4");
    g.throughput(Throughput::Elements(sources.len() as u64));
    let mut p = Policy::new(&PolicyConfig::default(), shared());
    g.bench_function("defaults", |b| {
        b.iter(|| {
            for s in &sources {
                p.refresh();
                black_box(p.check(black_box(*s), dst, 0));
            }
        })
    });
    let allow: Vec<_> = [
        "10.0.0.0/8",
        "192.0.2.0/24",
        "2001:db8::/32",
        "198.51.100.0/24",
    ]
    .iter()
    .map(|c| c.parse().unwrap())
    .collect();
    let cfg = PolicyConfig {
        allow: AllowList::new(&allow),
        max_pps_per_source: Some(1_000_000),
        ..Default::default()
    };
    let mut p = Policy::new(&cfg, shared());
    let mut now = 1u64;
    g.bench_function("allow_4_and_rate_limit", |b| {
        b.iter(|| {
            for s in &sources {
                now += 1000;
                p.refresh();
                black_box(p.check(black_box(*s), dst, now));
            }
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    decode_completion,
    build_reply_batch,
    record_latency_sample,
    live_latency_flush,
    policy_check
);
criterion_main!(benches);
