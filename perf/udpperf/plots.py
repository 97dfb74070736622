"""rate.png and rtt_cdf.png, from a session's rows and hgrm files.
Optional: without matplotlib the plots are skipped with a message."""

import contextlib
from pathlib import Path

from .common import COLORS, LOSS_LIMIT, ORDER, REFLECTORS, SIZES, log
from .report import rate_points

def plots(rows, src, out):
    """rate.png and rtt_cdf.png in `out`, from the rows and the hgrm files of `src`."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator
    except ImportError:
        log("no matplotlib: plots skipped (perf/compare.sh installs it)")
        return
    kilo = FuncFormatter(lambda v, _: f"{v / 1e3:g}k" if v < 1e6 else f"{v / 1e6:g}M")
    fig, axes = plt.subplots(2, len(SIZES), figsize=(13, 9.5), sharex="col",
                             gridspec_kw={"height_ratios": [3, 1.4]})
    for col, size in enumerate(SIZES):
        ax, lax = axes[0][col], axes[1][col]
        lo, hi = float("inf"), 0.0
        for kind in ORDER:
            raw = [r for r in rows if r["experiment"] == "rate" and r["size"] == size
                   and r["reflector"] == kind and "error" not in r and r["pps_received"] > 0]
            pts = rate_points(rows, size, kind)
            if not raw:
                continue
            c = COLORS[kind]
            flows = REFLECTORS[kind][1]
            label = f"{REFLECTORS[kind][0]} ({flows} flow{'s' if flows > 1 else ''})"
            ax.scatter([r["pps_sent"] for r in raw], [r["pps_received"] for r in raw],
                       s=12, color=c, alpha=0.35, lw=0)
            pts = sorted(pts, key=lambda q: q["offered"])
            ax.plot([q["offered"] for q in pts], [q["reflected"] for q in pts], "-o", color=c,
                    label=label, ms=4, lw=1.4)
            sat = [q for q in pts if q["rate"] == 0]
            ax.plot([q["offered"] for q in sat], [q["reflected"] for q in sat], "*", color=c,
                    ms=14, mec="black", mew=0.5)
            lax.plot([q["offered"] for q in pts], [max(100 * q["loss"], 1e-4) for q in pts],
                     "-o", color=c, ms=4, lw=1.2)
            lo = min(lo, min(r["pps_received"] for r in raw))
            hi = max(hi, max(r["pps_sent"] for r in raw))
        if hi > 0:
            ax.plot([lo * 0.8, hi * 1.2], [lo * 0.8, hi * 1.2], "--", color="grey", lw=0.8,
                    label="reflected = offered")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for a in (ax.xaxis, ax.yaxis, lax.xaxis):
            a.set_major_locator(LogLocator(base=10, subs=(1.0,)))
            a.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
            a.set_major_formatter(kilo)
            a.set_minor_formatter(kilo)
        ax.tick_params(axis="both", which="minor", labelsize=7)
        ax.set_title(f"{size}-byte datagrams")
        ax.set_ylabel("reflected packets/s (bench received), log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper left",
                  title="\u2605 = --rate 0 (as fast as bench can)", title_fontsize=8)
        lax.axhline(100 * LOSS_LIMIT, color="grey", ls=":", lw=0.9)
        lax.text(0.01, 100 * LOSS_LIMIT * 1.3, "0.1%",
                 transform=lax.get_yaxis_transform(), fontsize=7, color="grey")
        lax.set_yscale("log")
        lax.set_ylim(5e-5, 200)
        lax.set_ylabel("loss %, log (0 at 1e-4)")
        lax.set_xlabel("offered packets/s (bench sent), log")
        lax.tick_params(axis="x", which="minor", labelsize=7)
        lax.grid(alpha=0.3, which="both")
    fig.suptitle("Reflected against offered rate, loopback: reflector on CPU 1, bench on CPU 0\n"
                 "dots: single runs; lines: medians over rounds")
    fig.tight_layout()
    fig.savefig(out / "rate.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(2, len(SIZES), figsize=(13, 9))
    for col, size in enumerate(SIZES):
        ax, tax = axes[0][col], axes[1][col]
        for kind in ORDER:
            rs = [r for r in rows if r["experiment"] == "rtt" and r["size"] == size
                  and r["reflector"] == kind and r.get("hgrm")]
            for i, r in enumerate(rs):
                xs, ys = read_hgrm(src / r["hgrm"])
                if not xs:
                    continue
                kw = dict(color=COLORS[kind], lw=1.3, alpha=0.95 if i == 0 else 0.5,
                          label=REFLECTORS[kind][0] if i == 0 else None)
                ax.plot(xs, ys, drawstyle="steps-post", **kw)
                tail = [(x, 1 / (1 - y)) for x, y in zip(xs, ys) if y < 1]
                tax.plot([t[1] for t in tail], [t[0] for t in tail], **kw)
        ax.set_xscale("log")
        ax.set_xlabel("round-trip time, \u00b5s (log)")
        ax.set_ylabel("fraction of round trips \u2264 x")
        ax.set_title(f"{size}-byte datagrams: CDF")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower right")
        tax.set_xscale("log")
        tax.set_yscale("log")
        ticks = [2, 10, 100, 1000, 10000]
        tax.set_xticks(ticks)
        tax.set_xticklabels(["p50", "p90", "p99", "p99.9", "p99.99"])
        tax.set_xlim(1, 2e4)
        tax.set_ylabel("round-trip time, \u00b5s (log)")
        tax.set_title(f"{size}-byte datagrams: percentiles (tail)")
        tax.grid(alpha=0.3, which="both")
    fig.suptitle("Ping-pong RTT, bench --flows 1 --window 1 on CPU 0, reflector on CPU 1 "
                 "(one line per round)")
    fig.tight_layout()
    fig.savefig(out / "rtt_cdf.png", dpi=110)
    plt.close(fig)


def read_hgrm(path):
    xs, ys = [], []
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and not line.startswith("#"):
                with contextlib.suppress(ValueError):
                    xs.append(float(parts[0]))
                    ys.append(float(parts[1]))
    return xs, ys
