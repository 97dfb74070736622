//! `serve --check`: everything `serve` checks before it binds, then the
//! configuration it would run with, on stdout. Binds nothing.

use serde_json::json;

use crate::{
    config::{BackendChoice, ServeConfig},
    error::uring_refusal_hint,
    parse::format_cpu_list,
    worker::Backend,
    Error,
};

/// The backend `serve` would run, and why when it is not the one asked for.
fn resolve_backend(choice: BackendChoice) -> Result<(Backend, Option<String>), Error> {
    match choice {
        BackendChoice::Mmsg => Ok((Backend::Mmsg, None)),
        BackendChoice::Uring | BackendChoice::Auto => match crate::io::uring::probe() {
            Ok(()) => Ok((Backend::Uring, None)),
            Err(e) if choice == BackendChoice::Uring => Err(Error::UringUnavailable(e)),
            Err(e) => Ok((
                Backend::Mmsg,
                Some(format!(
                    "io_uring unavailable ({e}): {}",
                    uring_refusal_hint(&e)
                )),
            )),
        },
    }
}

/// Prints the resolved configuration (JSON with `--json`), or returns why
/// `serve` could not start with it.
pub fn run(cfg: &ServeConfig) -> Result<(), Error> {
    let (backend, fallback) = resolve_backend(cfg.backend)?;
    let secs = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64());
    if cfg.json {
        let listen: Vec<_> = cfg
            .listeners
            .iter()
            .map(|l| json!({"addr": l.addr.to_string(), "mode": l.mode.name()}))
            .collect();
        println!(
            "{}",
            json!({
                "event": "check", "ok": true, "listen": listen, "cpus": cfg.cpus,
                "workers": cfg.cpus.len(), "backend": backend.name(),
                "backend_asked": cfg.backend.name(), "backend_fallback": fallback,
                "batch": cfg.batch, "max_datagram": cfg.max_datagram,
                "buffers": cfg.buffers, "rcvbuf": cfg.rcvbuf,
                "incoming_cpu": cfg.incoming_cpu, "gso": cfg.gso, "gro": cfg.gro,
                "busy_poll": cfg.busy_poll, "coalesce_us": cfg.coalesce_us,
                "duration_s": secs(cfg.duration), "stats_interval_s": secs(cfg.stats_interval),
                "metrics": cfg.metrics.map(|a| a.to_string()), "interface": cfg.interface,
            })
        );
        return Ok(());
    }
    let mut out = vec!["udp-reflector: configuration OK (nothing bound)".to_string()];
    for l in &cfg.listeners {
        out.push(format!("  listen        {} ({})", l.addr, l.mode.name()));
    }
    out.push(format!(
        "  workers       {} on cpus {}",
        cfg.cpus.len(),
        format_cpu_list(&cfg.cpus)
    ));
    out.push(format!(
        "  backend       {} (asked: {}{})",
        backend.name(),
        cfg.backend.name(),
        fallback.map_or(String::new(), |f| format!("; {f}"))
    ));
    out.push(format!(
        "  batch {}, max-datagram {}, buffers {}, rcvbuf {}, incoming-cpu {}, gso {}",
        cfg.batch,
        cfg.max_datagram,
        cfg.buffers,
        cfg.rcvbuf
            .map_or("system default".to_string(), |b| b.to_string()),
        if cfg.incoming_cpu { "on" } else { "off" },
        if cfg.gso { "on" } else { "off" },
    ));
    out.push(format!(
        "  gro {}, busy-poll {}, coalesce-us {}",
        if cfg.gro { "on" } else { "off" },
        if cfg.busy_poll { "on" } else { "off" },
        cfg.coalesce_us
            .map_or("off".to_string(), |us| us.to_string()),
    ));
    out.push(format!(
        "  duration {}, stats-interval {}",
        secs(cfg.duration).map_or("until stopped".to_string(), |s| format!("{s} s")),
        secs(cfg.stats_interval).map_or("off".to_string(), |s| format!("{s} s")),
    ));
    out.push(format!(
        "  metrics {}, interface {}",
        cfg.metrics
            .map_or("off".to_string(), |a| format!("http://{a}/metrics")),
        cfg.interface.as_deref().unwrap_or("none"),
    ));
    println!("{}", out.join("\n"));
    Ok(())
}
