#!/usr/bin/env python3
"""Turns one bench/run.sh run into the table it prints and the results.json it keeps.

Usage: report.py OUT_DIR   (reads OUT_DIR/meta.json, samples.jsonl and the h2load logs)

Figures per layout and target: saturation throughput and proxy CPU per request (median of the
interleaved rounds), RSS under load, latency percentiles at each fixed rate (over every request
of every round, so p99 rests on enough samples) and the latency each proxy adds to direct, RSS
idle and with idle keep-alive connections. Every figure is followed by its ratio to nginx and
to direct. Then the issue's targets, met or not, with the figures. Standard library only.
"""

import json
import statistics
import sys
from pathlib import Path

TARGETS = ["direct", "lameduck", "baseline", "nginx", "haproxy"]
MIB = 1024  # VmRSS is in kB (KiB)


def pct(sorted_vals, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def read_latencies(path):
    """h2load --log-file: start (us since epoch), status, microseconds to the end of response."""
    lat, bad = [], 0
    try:
        with open(path) as f:
            for line in f:
                cols = line.split("\t")
                if len(cols) < 3:
                    continue
                if not cols[1].startswith("2"):
                    bad += 1
                lat.append(int(cols[2]))
    except FileNotFoundError:
        pass
    return lat, bad


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def summarize(samples, meta):
    layouts = meta["layouts"].split()
    targets = [t for t in TARGETS if t in meta["targets"].split()]
    summary, warnings = {}, []
    for layout in layouts:
        per = {}
        for t in targets:
            sat = [s for s in samples if s["kind"] == "saturation" and s["layout"] == layout and s["target"] == t]
            d = {}
            d["throughput_rps"] = median([s["rps"] for s in sat])
            d["cpu_us_per_req"] = median(
                [s["proxy_cpu_s"] / s["requests"] * 1e6 for s in sat if s["requests"]]
            ) if t != "direct" else None
            d["upstream_cpu_us_per_req"] = median(
                [s["upstream_cpu_s"] / s["requests"] * 1e6 for s in sat if s["requests"]]
            )
            d["rss_load_kb"] = median([s["rss_load_kb"] for s in sat])
            for s in sat:
                if s["non_2xx"] or s["socket_errors"]:
                    warnings.append(f"{layout} round {s['round']} {t}: {s['non_2xx']} non-2xx, {s['socket_errors']} socket errors under saturation")
            for rate in meta["rates"]:
                runs = [s for s in samples if s["kind"] == "rate" and s["layout"] == layout and s["target"] == t and s["rate"] == rate]
                lat = []
                for s in runs:
                    vals, bad = read_latencies(s["log"])
                    s["latency_us"] = {f"p{p}": pct(sorted(vals), p) for p in (50, 90, 99)}
                    s["latency_us"]["max"] = max(vals) if vals else None
                    s["latency_us"]["n"] = len(vals)
                    lat += vals
                    if bad or s["failed"]:
                        warnings.append(f"{layout} round {s['round']} {t} at {rate}/s: {s['failed']} failed, {bad} non-2xx")
                    if s["achieved_rps"] is not None and s["achieved_rps"] < 0.95 * rate:
                        warnings.append(f"{layout} round {s['round']} {t}: asked {rate}/s, achieved {s['achieved_rps']:.0f}/s")
                lat.sort()
                r = {f"p{p}_us": pct(lat, p) for p in (50, 90, 99)}
                r["max_us"] = lat[-1] if lat else None
                r["requests"] = len(lat)
                served = sum(s["succeeded"] or 0 for s in runs)
                r["cpu_us_per_req"] = (
                    sum(s["proxy_cpu_s"] for s in runs) / served * 1e6 if served and t != "direct" else None
                )
                gap_us = 1e6 / (rate / max(1, runs[0]["clients"])) if runs else None
                if r["max_us"] and gap_us and r["max_us"] > gap_us:
                    warnings.append(f"{layout} {t} at {rate}/s: a response took {r['max_us']} us, over the {gap_us:.0f} us gap between a connection's requests (its next request was late: coordinated omission possible)")
                d[f"rate_{rate}"] = r
            per[t] = d
        # Latency each proxy adds to going direct.
        for rate in meta["rates"]:
            base = per.get("direct", {}).get(f"rate_{rate}", {})
            for t in targets:
                r = per[t][f"rate_{rate}"]
                for p in (50, 90, 99):
                    a, b = r.get(f"p{p}_us"), base.get(f"p{p}_us")
                    r[f"added_p{p}_us"] = a - b if a is not None and b is not None else None
        summary[layout] = per
    rss = {}
    for t in targets:
        idle = [s for s in samples if s["kind"] == "rss_idle" and s["target"] == t]
        conns = [s for s in samples if s["kind"] == "rss_conns" and s["target"] == t]
        rss[t] = {
            "rss_idle_kb": idle[0]["rss_kb"] if idle else None,
            "rss_conns_kb": conns[0]["rss_kb"] if conns else None,
            "rss_closed_kb": conns[0].get("rss_closed_kb") if conns else None,
            "conns_held": conns[0]["held"] if conns else None,
            "conns_still_open": conns[0]["still_open"] if conns else None,
        }
        if conns and conns[0]["still_open"] is not None and conns[0]["still_open"] < conns[0]["conns"]:
            warnings.append(f"{t}: only {conns[0]['still_open']} of {conns[0]['conns']} idle connections were still open at the RSS reading")
    return summary, rss, warnings


def fmt(v, unit=""):
    if v is None:
        return "-"
    if unit == "kb":
        return f"{v / MIB:.1f}"
    if isinstance(v, float) and abs(v) < 100:
        return f"{v:.1f}"
    return f"{v:.0f}"


def ratio(v, base):
    if v is None or base is None or base == 0:
        return "-"
    return f"{v / base:.2f}x"


def table(meta, summary, rss):
    targets = [t for t in TARGETS if t in meta["targets"].split()]
    out = []
    w = 34

    def row(label, vals, unit="", ratios=True):
        out.append(f"{label:<{w}}" + "".join(f"{fmt(vals.get(t), unit):>11}" for t in targets))
        if ratios:
            for name in ("nginx", "baseline", "direct"):
                if name in vals and vals[name] is not None:
                    out.append(f"{'  ratio to ' + name:<{w}}" + "".join(f"{ratio(vals.get(t), vals[name]):>11}" for t in targets))

    header = f"{'figure':<{w}}" + "".join(f"{t:>11}" for t in targets)
    for layout, per in summary.items():
        where = ("upstream + proxy on CPU 0, load generator on CPU 1" if layout == "pinned"
                 else "no pinning, the scheduler places everything")
        out.append(f"== {layout}: {where}; saturation = median of {meta['rounds']} rounds ==")
        out.append(header)
        row("throughput, saturated (req/s)", {t: per[t]["throughput_rps"] for t in targets})
        row("proxy CPU, saturated (us/req)", {t: per[t]["cpu_us_per_req"] for t in targets})
        row("RSS under load (MiB)", {t: per[t]["rss_load_kb"] for t in targets}, "kb")
        for rate in meta["rates"]:
            k = f"rate_{rate}"
            for p in (50, 90, 99):
                row(f"latency p{p} at {rate}/s (us)", {t: per[t][k][f"p{p}_us"] for t in targets},
                    ratios=(p == 99))
            for p in (50, 99):
                vals = {t: per[t][k][f"added_p{p}_us"] for t in targets if t != "direct"}
                vals["direct"] = None
                out.append(f"{'  added p' + str(p) + ' vs direct (us)':<{w}}" + "".join(f"{fmt(vals.get(t)):>11}" for t in targets))
                out.append(f"{'    ratio to nginx':<{w}}" + "".join(f"{ratio(vals.get(t), vals.get('nginx')):>11}" for t in targets))
            row(f"proxy CPU at {rate}/s (us/req)", {t: per[t][k]["cpu_us_per_req"] for t in targets})
        out.append("")
    out.append("== memory (the proxy's processes, summed; direct = the upstream) ==")
    out.append(header)
    row("RSS idle (MiB)", {t: rss[t]["rss_idle_kb"] for t in targets}, "kb")
    row(f"RSS, {meta['idle_conns']} idle keep-alive conns (MiB)", {t: rss[t]["rss_conns_kb"] for t in targets}, "kb")
    row("RSS, once they closed (MiB)", {t: rss[t]["rss_closed_kb"] for t in targets}, "kb")
    return out


def check_targets(meta, summary, rss):
    """The issue's targets for lameduck, as ratios in this run (pinned layout when measured)."""
    layout = "pinned" if "pinned" in summary else next(iter(summary))
    per = summary[layout]
    if "lameduck" not in per or "nginx" not in per:
        return []
    ld, ng = per["lameduck"], per["nginx"]
    res = []

    def add(name, ok, figure):
        res.append({"target": name, "met": ok, "figure": figure})

    if ld["throughput_rps"] and ng["throughput_rps"]:
        r = ld["throughput_rps"] / ng["throughput_rps"]
        add(f"throughput >= 1.15x nginx ({layout})", r >= 1.15,
            f"{ld['throughput_rps']:.0f} vs {ng['throughput_rps']:.0f} req/s = {r:.2f}x")
    if ld["cpu_us_per_req"] and ng["cpu_us_per_req"]:
        add(f"CPU per request <= nginx ({layout}, saturated)", ld["cpu_us_per_req"] <= ng["cpu_us_per_req"],
            f"{ld['cpu_us_per_req']:.1f} vs {ng['cpu_us_per_req']:.1f} us/req")
    rate = 1000 if 1000 in meta["rates"] else min(meta["rates"])
    a, b = ld[f"rate_{rate}"]["added_p99_us"], ng[f"rate_{rate}"]["added_p99_us"]
    if a is not None and b is not None:
        add(f"added p99 at {rate}/s <= nginx ({layout})", a <= b, f"+{a} vs +{b} us")
    idle = rss["lameduck"]["rss_idle_kb"]
    if idle:
        add("RSS idle <= 8 MiB", idle <= 8 * MIB, f"{idle / MIB:.1f} MiB")
    conns = rss["lameduck"]["rss_conns_kb"]
    if conns:
        add(f"RSS with {meta['idle_conns']} idle conns <= 12 MiB", conns <= 12 * MIB, f"{conns / MIB:.1f} MiB")
    return res


def main():
    out_dir = Path(sys.argv[1])
    meta = json.loads((out_dir / "meta.json").read_text())
    samples = [json.loads(line) for line in (out_dir / "samples.jsonl").read_text().splitlines() if line.strip()]
    summary, rss, warnings = summarize(samples, meta)
    goals = check_targets(meta, summary, rss)
    lines = [
        f"lameduck overhead benchmark: {meta['started']}, {meta['nproc']} CPU ({meta['cpu']}), "
        f"upstream {meta['upstream']}, {meta['lameduck']}",
        *([f"baseline: {meta['baseline']}"] if meta.get("baseline") else []),
        f"nginx {meta['nginx']}, HAProxy {meta['haproxy']}, {meta['wrk']}, {meta['h2load']}; "
        f"wrk -c{meta['connections']} {meta['duration_s']}s, fixed rates {meta['latency_duration_s']}s each",
        "",
    ]
    lines += table(meta, summary, rss)
    builds = [s.get("builds_running") or 0 for s in samples]
    lines.append("")
    lines.append(f"noise: compiler/linker processes running at {sum(1 for b in builds if b)} of {len(builds)} "
                 f"samples (max {max(builds, default=0)}); load average {min(s['loadavg1'] for s in samples):.2f}"
                 f"..{max(s['loadavg1'] for s in samples):.2f}")
    if goals:
        lines.append("")
        lines.append("== targets (lameduck) ==")
        for g in goals:
            lines.append(f"  [{'met' if g['met'] else 'NOT met'}] {g['target']}: {g['figure']}")
    if warnings:
        lines.append("")
        lines.append("== warnings ==")
        lines += [f"  {w}" for w in warnings]
    print("\n".join(lines))
    (out_dir / "results.json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "memory": rss, "targets": goals, "warnings": warnings,
         "samples": samples}, indent=1))


if __name__ == "__main__":
    main()
