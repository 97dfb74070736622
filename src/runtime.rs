//! `serve`: choose the backend, bind every socket, start the workers, report
//! until a signal or the duration ends, then stop, drain and summarise.

use std::{
    os::fd::AsRawFd,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use crate::{
    config::{BackendChoice, ServeConfig},
    error::uring_refusal_hint,
    hostdrops::HostReader,
    io::{IoConfig, Socket, Stop},
    live::{self, LatencyHub},
    metrics::{self, MetricsServer},
    policy::{Policy, PortSet, SharedPorts},
    registry::Registry,
    report::{Reporter, WorkerFigures},
    stats::{Counters, LatencySummary},
    sys::{signals, socket},
    worker::{Backend, Worker},
    Error,
};

/// Picks the receive path. `auto` falls back to mmsg with one line on stderr
/// saying why; `uring` refused is an error with the same explanation.
pub fn choose_backend(choice: BackendChoice) -> Result<Backend, Error> {
    match choice {
        BackendChoice::Mmsg => Ok(Backend::Mmsg),
        BackendChoice::Uring => crate::io::uring::probe()
            .map(|()| Backend::Uring)
            .map_err(Error::UringUnavailable),
        BackendChoice::Auto => match crate::io::uring::probe() {
            Ok(()) => Ok(Backend::Uring),
            // Not a refusal of io_uring: the fallback would fail the same way.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                Err(Error::TooFewFiles {
                    need: 0,
                    limit: crate::sys::open_files_limit().unwrap_or(0),
                })
            }
            Err(e) => {
                eprintln!(
                    "udp-reflector: io_uring unavailable ({e}): {}; using the recvmmsg/sendmmsg backend",
                    uring_refusal_hint(&e)
                );
                Ok(Backend::Mmsg)
            }
        },
    }
}

/// How long the stop waits for stdout to take the summary.
const OUTPUT_WAIT: Duration = Duration::from_millis(250);

/// How often the runtime reads the other reflectors' ports.
const REGISTRY_PERIOD: Duration = Duration::from_secs(1);

/// Runs the reflector until SIGINT, SIGTERM or `--duration`.
pub fn serve(cfg: &ServeConfig) -> Result<(), Error> {
    if crate::sys::stdout_was_closed() {
        return Err(Error::StdoutClosed);
    }
    signals::block_stop_signals().map_err(|e| Error::io("blocking the stop signals", e))?;
    // Descriptors at the peak: stdio, the stop eventfd, one socket per
    // worker and listener, a ring per worker, and a few for the registry
    // and the metrics server.
    let need = 3 + 1 + (cfg.cpus.len() * (cfg.listeners.len() + 1)) as u64 + 4;
    if let Some(limit) = crate::sys::open_files_limit().filter(|&l| l < need) {
        return Err(Error::TooFewFiles { need, limit });
    }
    let backend = choose_backend(cfg.backend)?;
    let coalesce_us = match (backend, cfg.coalesce_us) {
        (Backend::Mmsg, Some(_)) => {
            eprintln!("udp-reflector: --coalesce-us needs the uring backend; the recvmmsg backend runs without it");
            None
        }
        (_, c) => c,
    };
    let gro = cfg.gro
        && match socket::probe_gro() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("udp-reflector: this kernel refuses UDP_GRO ({e}); receiving one datagram per read");
                false
            }
        };

    // Claim every address first (port 0 becomes a real port, a busy port is
    // named), then open one SO_REUSEPORT socket per worker and address.
    let mut resolved = Vec::with_capacity(cfg.listeners.len());
    for l in &cfg.listeners {
        let addr = socket::claim_port(&l.addr).map_err(|e| Error::bind(l.addr, e))?;
        resolved.push((addr, l.mode));
    }
    let mut per_worker: Vec<Vec<Socket>> = Vec::with_capacity(cfg.cpus.len());
    for &cpu in &cfg.cpus {
        let mut socks = Vec::with_capacity(resolved.len());
        for (addr, mode) in &resolved {
            let opts = socket::ListenOptions {
                gro,
                busy_poll: cfg.busy_poll,
                rcvbuf: cfg.rcvbuf,
                recv_ttl: mode.wants_ttl(),
                incoming_cpu: cfg.incoming_cpu.then_some(cpu),
            };
            let fd = socket::open_listener(addr, &opts).map_err(|e| Error::listen(*addr, e))?;
            socks.push(Socket::new(fd, *mode));
        }
        per_worker.push(socks);
    }
    let granted = match cfg.rcvbuf {
        Some(_) => per_worker
            .first()
            .and_then(|s| s.first())
            .and_then(|s| socket::rcvbuf(s.fd.as_raw_fd()).ok()),
        None => None,
    };

    // The source policy's reflector ports: ours, and those that other
    // reflectors of this host announce (read again once a second below).
    let own = PortSet::from_ports(resolved.iter().map(|(a, _)| a.port()));
    let ports = SharedPorts::new(cfg.policy.service_ports.clone(), own);
    let registry = match &cfg.registry {
        Some(dir) => {
            let mine: Vec<u16> = resolved.iter().map(|(a, _)| a.port()).collect();
            match Registry::announce(dir, &mine) {
                Ok(r) => {
                    ports.set_others(&r.others());
                    Some(r)
                }
                Err(e) => {
                    eprintln!(
                        "udp-reflector: cannot announce our ports in {} ({e}); other reflectors \
                         of this host on other ports are not known (--registry DIR to choose \
                         another directory, --registry off to say so)",
                        dir.display()
                    );
                    None
                }
            }
        }
        None => None,
    };

    let reporter =
        Reporter::new(cfg.json).map_err(|e| Error::io("starting the stdout writer thread", e))?;
    reporter.listening(&resolved, backend.name(), &cfg.cpus, granted);
    let host = HostReader::new(cfg.interface.as_deref())
        .map_err(|e| Error::io("reading the NIC statistics of --interface", e))?;
    let host_start = host.read();
    let start_time = SystemTime::now();

    let stop = Stop::new().map_err(|e| Error::io("creating the stop eventfd", e))?;
    let io_cfg = IoConfig {
        batch: cfg.batch,
        max_datagram: cfg.max_datagram,
        buffers: cfg.buffers,
        gso: cfg.gso,
        gro,
        busy_poll: cfg.busy_poll,
        coalesce_us,
    };
    let mut workers = Vec::with_capacity(cfg.cpus.len());
    for (id, (&cpu, socks)) in cfg.cpus.iter().zip(per_worker).enumerate() {
        let policy = Policy::new(&cfg.policy, Arc::clone(&ports));
        match Worker::spawn(id, cpu, socks, backend, io_cfg, Arc::clone(&stop), policy) {
            Ok(w) => workers.push(w),
            Err(e) => {
                stop.raise();
                workers.into_iter().for_each(|w: Worker| drop(w.join()));
                return Err(Error::io("starting a worker thread", e));
            }
        }
    }

    let hub = match LatencyHub::new(workers.iter().map(|w| Arc::clone(&w.live))) {
        Ok(hub) => Arc::new(hub),
        Err(e) => {
            stop.raise();
            workers.into_iter().for_each(|w: Worker| drop(w.join()));
            return Err(Error::io("installing the worker wake-up handler", e));
        }
    };
    let metrics_server = match cfg.metrics {
        Some(addr) => {
            let source = metrics::Source {
                workers: workers
                    .iter()
                    .map(|w| metrics::WorkerSource {
                        worker: w.id,
                        cpu: w.cpu,
                        counters: Arc::clone(&w.shared),
                    })
                    .collect(),
                latency: Arc::clone(&hub),
                host: host.clone(),
                host_start,
                backend: backend.name(),
                started: start_time,
            };
            match MetricsServer::start(addr, source) {
                Ok(server) => {
                    reporter.metrics(server.addr);
                    Some(server)
                }
                Err(e) => {
                    stop.raise();
                    workers.into_iter().for_each(|w: Worker| drop(w.join()));
                    return Err(Error::io("serving --metrics", e));
                }
            }
        }
        None => None,
    };

    let started = Instant::now();
    let deadline = cfg.duration.map(|d| started + d);
    let mut next_report = cfg.stats_interval.map(|i| started + i);
    let mut last = (started, Counters::default());
    let mut next_registry_read = started + REGISTRY_PERIOD;
    let mut last_latency = crate::stats::new_latency_histogram();
    let mut last_host = host_start;
    loop {
        let now = Instant::now();
        if let Some(r) = registry.as_ref().filter(|_| now >= next_registry_read) {
            ports.set_others(&r.others());
            next_registry_read = now + REGISTRY_PERIOD;
        }
        if deadline.is_some_and(|d| now >= d) || workers.iter().any(Worker::is_finished) {
            break;
        }
        if let (Some(at), Some(every)) = (next_report, cfg.stats_interval) {
            if now >= at {
                let mut total = Counters::default();
                workers.iter().for_each(|w| total.add(&w.shared.snapshot()));
                let latency = live::merged(&hub.collect());
                let mut delta = latency.clone();
                // Cumulative histograms only grow: the subtraction cannot fail.
                let _ = delta.subtract(&last_latency);
                let host_now = host.read();
                reporter.interval(
                    SystemTime::now(),
                    now - started,
                    now - last.0,
                    &total.since(&last.1),
                    &LatencySummary::of(&delta),
                    &host_now.since(&last_host),
                );
                last = (now, total);
                last_latency = latency;
                last_host = host_now;
                next_report = Some(at + every);
            }
        }
        // Wake for the next report, the deadline, or at least every 100 ms to
        // notice a worker that failed.
        let mut wake = now + Duration::from_millis(100);
        for t in [next_report, deadline].into_iter().flatten() {
            wake = wake.min(t);
        }
        match signals::wait_stop_signal(wake.saturating_duration_since(now)) {
            Some(signals::SUMMARY_SIGNAL) => {
                let latency = hub.collect();
                let so_far: Vec<_> = workers
                    .iter()
                    .zip(latency)
                    .map(|(w, h)| (w.id, w.cpu, w.shared.snapshot(), h))
                    .collect();
                reporter.summary_so_far(backend.name(), started.elapsed(), &so_far);
            }
            Some(_) => break,
            None => {}
        }
    }
    stop.raise();
    let elapsed = started.elapsed();
    hub.retire();

    let mut figures = Vec::with_capacity(workers.len());
    let mut first_error = None;
    for (i, w) in workers.into_iter().enumerate() {
        let (id, cpu) = (w.id, w.cpu);
        match w.join() {
            Ok(r) => figures.push(WorkerFigures {
                worker: id,
                cpu,
                counters: r.counters,
                latency: hub.final_latency(i, &r.latency),
            }),
            Err(e) => {
                eprintln!("udp-reflector: worker {id} (cpu {cpu}) failed: {e}");
                first_error.get_or_insert(e);
            }
        }
    }
    reporter.summary(
        backend.name(),
        elapsed,
        &figures,
        &host.read().since(&host_start),
    );
    drop(metrics_server);
    // The stop never waits on stdout for long: a pipe nobody reads gets
    // this long to take the summary.
    let written = reporter.finish(OUTPUT_WAIT);
    match (first_error, written) {
        (Some(e), w) => {
            if let Err(o) = w {
                eprintln!("udp-reflector: {o}");
            }
            Err(Error::io("a worker failed", e))
        }
        (None, Err(o)) => Err(Error::Output(o)),
        (None, Ok(())) => Ok(()),
    }
}
