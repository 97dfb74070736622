//! Several workers: SO_REUSEPORT spreads the flows over them, and
//! SO_INCOMING_CPU keeps each datagram on the CPU that processed it.

use super::*;

both_backends!(
    two_workers_answer_every_flow_and_share_them,
    incoming_cpu_keeps_each_datagram_on_the_cpu_that_processed_it,
);

fn two_workers_answer_every_flow_and_share_them(backend: &'static str) {
    if common::usable_cpus() < 2 {
        skip(Need::Cpus, "needs 2 usable CPUs for 2 workers");
        return;
    }
    const FLOWS: usize = 64;
    const PER_FLOW: usize = 4;
    let Some(r) = start(backend, &["--listen", "127.0.0.1:0", "--workers", "2"]) else {
        return;
    };
    let flows: Vec<UdpSocket> = (0..FLOWS)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.connect(r.addr()).unwrap();
            s
        })
        .collect();
    let sent = |f: usize, k: usize| payload(16 + k, (f * PER_FLOW + k) as u64 + 1);
    for k in 0..PER_FLOW {
        for (f, s) in flows.iter().enumerate() {
            s.send(&sent(f, k)).unwrap();
        }
    }
    let mut missing = Vec::new();
    let mut buf = [0u8; 2048];
    for (f, s) in flows.iter().enumerate() {
        let mut want: Vec<Vec<u8>> = (0..PER_FLOW).map(|k| sent(f, k)).collect();
        while !want.is_empty() {
            match recv_within(s, &mut buf, REPLY_TIMEOUT) {
                Some((n, from)) => {
                    assert_eq!(from, r.addr());
                    let i = want
                        .iter()
                        .position(|w| *w == buf[..n])
                        .unwrap_or_else(|| panic!("flow {f}: a reply that matches no request"));
                    want.swap_remove(i);
                }
                None => {
                    missing.push((f, want.len()));
                    break;
                }
            }
        }
    }
    let s = stop_and_summarise(r);
    assert!(
        missing.is_empty(),
        "[{backend}] (flow, replies missing): {missing:?}"
    );
    let workers = s["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{s}");
    assert_ne!(
        workers[0]["cpu"], workers[1]["cpu"],
        "two workers on one cpu: {s}"
    );
    let per_worker: Vec<u64> = workers.iter().map(|w| counter(w, "rx_packets")).collect();
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "[{backend}] {FLOWS} flows but a worker got none (rx per worker {per_worker:?}): {s}"
    );
    let total = (FLOWS * PER_FLOW) as u64;
    assert_eq!(counter(&s["total"], "rx_packets"), total, "{s}");
    assert_eq!(counter(&s["total"], "tx_packets"), total, "{s}");
}

/// With `--incoming-cpu`, SO_INCOMING_CPU overrides the flow hash: on
/// loopback the kernel processes a datagram on the sender's CPU, so a client
/// pinned to one worker's CPU reaches that worker only, whatever its flows.
fn incoming_cpu_keeps_each_datagram_on_the_cpu_that_processed_it(backend: &'static str) {
    if common::usable_cpus() < 2 {
        skip(Need::Cpus, "needs 2 usable CPUs for 2 workers");
        return;
    }
    const FLOWS: usize = 64;
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--incoming-cpu",
    ];
    let Some(r) = start(backend, &args) else {
        return;
    };
    let target = r.addr();
    let cpus: Vec<usize> = r.listening["cpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap() as usize)
        .collect();
    // One pinned client per worker CPU, one after the other, each waiting
    // for all its replies. Unequal counts per CPU: a flow hash spreading
    // them could not give each worker exactly its CPU's share.
    let per_flow = |i: usize| 3 - 2 * (i % 2);
    for (i, &cpu) in cpus.iter().enumerate() {
        let per = per_flow(i);
        let answered = std::thread::spawn(move || {
            assert!(core_affinity::set_for_current(core_affinity::CoreId {
                id: cpu
            }));
            let flows: Vec<UdpSocket> = (0..FLOWS)
                .map(|_| {
                    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                    s.connect(target).unwrap();
                    s
                })
                .collect();
            let mut buf = [0u8; 64];
            let mut answered = 0;
            for s in &flows {
                for k in 0..per {
                    s.send(&[k as u8; 16]).unwrap();
                }
                for _ in 0..per {
                    answered += usize::from(recv_within(s, &mut buf, REPLY_TIMEOUT).is_some());
                }
            }
            answered
        })
        .join()
        .unwrap();
        assert_eq!(answered, FLOWS * per, "[{backend}] client on cpu {cpu}");
    }
    let s = stop_and_summarise(r);
    for w in s["workers"].as_array().unwrap() {
        let i = cpus
            .iter()
            .position(|&c| c as u64 == w["cpu"].as_u64().unwrap())
            .unwrap();
        assert_eq!(
            counter(w, "rx_packets"),
            (FLOWS * per_flow(i)) as u64,
            "[{backend}] each worker gets exactly the datagrams sent from its cpu: {s}"
        );
    }
}
