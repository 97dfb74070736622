//! End to end over loopback: one worker per backend and batch size, a client
//! that sends a burst of 64-byte datagrams and reads every reply.
//!
//! Both the worker and the client run here, so the figure is a round trip
//! through the kernel twice, not the reflector's ceiling: compare backends
//! and batch sizes with each other, in the same run.

use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    sync::Arc,
    time::Duration,
};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use udp_reflector::{
    io::{IoConfig, Socket, Stop},
    policy::{Policy, PolicyConfig, PortSet, SharedPorts},
    reflect::Mode,
    runtime::choose_backend,
    sys::socket::{self, ListenOptions},
    worker::{Backend, Worker},
};

const BURST: usize = 128;

fn start(backend: Backend, batch: usize) -> (Worker, Arc<Stop>, SocketAddr) {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let fd = socket::open_listener(&addr, &ListenOptions::default()).expect("bind loopback");
    let bound = socket::local_addr(fd.as_raw_fd()).unwrap();
    let stop = Stop::new().unwrap();
    let cfg = IoConfig {
        batch,
        max_datagram: 2048,
        buffers: 1024,
        gso: true,
        gro: false,
        busy_poll: false,
        coalesce_us: None,
    };
    let cpu = udp_reflector::sys::affinity::allowed_cpus().unwrap()[0];
    let w = Worker::spawn(
        0,
        cpu,
        vec![Socket::new(fd, Mode::Echo)],
        backend,
        cfg,
        Arc::clone(&stop),
        Policy::new(
            &PolicyConfig::default(),
            SharedPorts::new(PolicyConfig::default().service_ports, PortSet::default()),
        ),
    )
    .unwrap();
    (w, stop, bound)
}

fn loopback(c: &mut Criterion) {
    let mut backends = vec![Backend::Mmsg];
    match choose_backend(udp_reflector::config::BackendChoice::Uring) {
        Ok(b) => backends.insert(0, b),
        Err(e) => eprintln!("skipping the uring backend: {e}"),
    }
    for backend in backends {
        for batch in [1usize, 64] {
            let (worker, stop, target) = start(backend, batch);
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            client.connect(target).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(1)))
                .unwrap();
            let payload = [0x5au8; 64];
            let mut buf = [0u8; 2048];
            let name = format!("loopback_{}_batch_{batch}_size_64", backend.name());
            let mut g = c.benchmark_group(name);
            g.throughput(Throughput::Elements(BURST as u64));
            g.bench_function(BenchmarkId::new("burst", BURST), |b| {
                b.iter(|| {
                    for _ in 0..BURST {
                        client.send(&payload).unwrap();
                    }
                    let mut got = 0;
                    while got < BURST && client.recv(&mut buf).is_ok() {
                        got += 1;
                    }
                    assert_eq!(
                        got,
                        BURST,
                        "replies lost on loopback: {}",
                        client.as_raw_fd()
                    );
                })
            });
            g.finish();
            stop.raise();
            worker.join().unwrap();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = loopback
}
criterion_main!(benches);
