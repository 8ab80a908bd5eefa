#!/usr/bin/env python3
"""bench/report.py — docs/bench.md and docs/bench.svg from a compare run.

Reads the raw log written by bench/compare (the peer harness's format: one
line per run, `rep=.. label=peer:W# rc=.. secs=.. <the program's own line>`)
and its env file; writes the Markdown table of medians with the ratio
libasync / peer per workload, the goals checked as ratios, and a gnuplot
chart (one panel per workload, log scale).

    report.py --raw RAW --env ENV --md OUT.md --svg OUT.svg --data DIR --command CMD
"""
import argparse
import collections
import os
import statistics
import subprocess
import sys

WORKLOADS = {
    "W1": ("spawn-get", "submit 1,000,000 tasks (task i returns i+1), keep every future, get all, sum",
           "ns/op", "ns_per_op"),
    "W2": ("round trip", "100,000 x (submit one task, get it at once)", "ns/op", "ns_per_op"),
    "W3": ("ping-pong", "two parties exchange an int over two unbuffered channels, 200,000 round trips",
           "ns/op", "ns_per_op"),
    "W4": ("fork/join", "fib(27) with a task per call (317,810 spawned tasks); ns per spawned task",
           "ns/op", "ns_per_op"),
    "W5": ("prime sieve", "concurrent prime sieve, first 1,000 primes, a task per filter, unbuffered channels",
           "total ms", "total_ms"),
    "W6": ("memory", "RSS per pending task: 1,000,000 tasks queued behind 2 held workers",
           "bytes/task", "bytes_per_task"),
}

LIB = ("libasync", "libasync-t1", "libasync-2tasks")

# (workload, libasync row, peer, goal on the ratio libasync / peer)
GOALS = [
    ("W1", "libasync", "tbb-taskgroup", 0.8),
    ("W1", "libasync", "naive-c", 0.5),
    ("W2", "libasync", "tbb-taskgroup", 2.0),
    ("W2", "libasync", "go", 0.3),
    ("W3", "libasync", "go", 1.5),
    ("W3", "libasync-2tasks", "go", 1.5),
    ("W4", "libasync", "tbb-taskgroup", 1.3),
    ("W4", "libasync", "java-forkjoin", 0.6),
    ("W4", "libasync-t1", "tbb-taskgroup", 1.3),
    ("W4", "libasync-t1", "java-forkjoin", 0.6),
    ("W5", "libasync", "go", None),        # completes; threads reached; ratio reported
]
W6_GOAL_BYTES = 100.0


def parse(line):
    d = {}
    for tok in line.rstrip("\n").split("\t"):
        k, _, v = tok.partition("=")
        if k in ("rep", "label", "rc", "secs"):
            d[k] = v
        else:
            for kv in tok.split(" "):
                k2, _, v2 = kv.partition("=")
                if k2:
                    d[k2] = v2
    return d


def fnum(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, digits=None):
    if v is None:
        return "—"
    if digits is not None:
        return f"{v:.{digits}f}"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def load(raw):
    rows = collections.OrderedDict()
    for line in open(raw):
        if not line.strip():
            continue
        d = parse(line)
        peer, _, wl = d.get("label", "?:?").partition(":")
        rows.setdefault((peer, wl), []).append(d)
    table = {}
    for (peer, wl), rs in rows.items():
        metric = WORKLOADS.get(wl, ("", "", "", "ns_per_op"))[3]
        ok = [r for r in rs if r.get("rc") == "0" and fnum(r.get("ns_per_op")) is not None]
        vals = [fnum(r.get(metric)) for r in ok]
        vals = [v for v in vals if v is not None]
        statuses = collections.Counter(
            r.get("status", "ok" if r in ok else "FAIL_rc" + r.get("rc", "?")) for r in rs)
        table[(peer, wl)] = dict(
            peer=peer, wl=wl, n=rs[0].get("n", "?"), runs=len(rs), ok=len(ok),
            value=med(vals), min=min(vals) if vals else None, max=max(vals) if vals else None,
            all=vals, ns=med([fnum(r.get("ns_per_op")) for r in ok]),
            total_ms=med([fnum(r.get("total_ms")) for r in ok]),
            raw_bytes=med([fnum(r.get("raw_bytes_per_task")) for r in ok]),
            reached=[int(r["threads_reached"]) for r in ok if r.get("threads_reached", "").isdigit()],
            status=",".join(f"{k}x{v}" for k, v in statuses.items()))
    return table


def ratio(table, wl, lib, peer, key="value"):
    a, b = table.get((lib, wl)), table.get((peer, wl))
    if not a or not b or not a[key] or not b[key]:
        return None
    return a[key] / b[key]


def goals_md(table):
    out = ["| workload | libasync | median | peer | peer median | ratio | best-run ratio | goal | met |",
           "|---|---|---:|---|---:|---:|---:|---:|:---:|"]
    unit = {wl: WORKLOADS[wl][2] for wl in WORKLOADS}
    for wl, lib, peer, goal in GOALS:
        a, b = table.get((lib, wl)), table.get((peer, wl))
        r = ratio(table, wl, lib, peer)
        rmin = ratio(table, wl, lib, peer, "min")
        if goal is None:
            reached = max(a["reached"]) if a and a["reached"] else None
            done = a and a["ok"] == a["runs"] and a["ok"] > 0
            met = ("yes" if done else "no") + (f" (completes {a['ok']}/{a['runs']}, threads reached {reached})"
                                               if a else "")
            goal_s = "completes"
        else:
            met = "—" if r is None else ("**yes**" if r <= goal else "no")
            if r is not None and rmin is not None and (rmin <= goal) != (r <= goal):
                met += " (best runs: " + ("yes" if rmin <= goal else "no") + ")"
            goal_s = f"≤ {goal:g}"
        out.append(f"| {wl} {WORKLOADS[wl][0]} | {lib} | {fmt(a and a['value'])} {unit[wl]} | {peer} | "
                   f"{fmt(b and b['value'])} {unit[wl]} | {fmt(r, 2) if r is not None else '—'} | "
                   f"{fmt(rmin, 2) if rmin is not None else '—'} | {goal_s} | {met} |")
    a = table.get(("libasync", "W6"))
    v = a and a["value"]
    out.append(f"| W6 memory | libasync | {fmt(v)} bytes/task | (absolute) | — | — | — | ≤ {W6_GOAL_BYTES:g} B | "
               f"{'—' if v is None else ('**yes**' if v <= W6_GOAL_BYTES else 'no')} |")
    return out


def workload_md(table, wl):
    name, desc, unit, metric = WORKLOADS[wl]
    rs = sorted([r for (p, w), r in table.items() if w == wl],
                key=lambda r: (r["value"] is None, r["value"] or 0))
    out = [f"### {wl} {name}: {desc}", ""]
    libs = [p for p in LIB if (p, wl) in table]
    hdr = "| peer | n | " + unit + " (median) | min | max | runs ok | " + \
        " | ".join(f"{p} / peer" for p in libs) + (" |" if libs else "|")
    out.append(hdr)
    out.append("|---|---:|---:|---:|---:|---:|" + "---:|" * len(libs))
    for r in rs:
        try:
            n = f"{int(r['n']):,}"
        except ValueError:
            n = r["n"]
        cells = []
        for p in libs:
            x = ratio(table, wl, p, r["peer"])
            cells.append("—" if x is None or r["peer"] == p else f"{x:.2f}")
        peer = f"**{r['peer']}**" if r["peer"] in LIB else r["peer"]
        status = "" if r["ok"] == r["runs"] else f" ({r['status']})"
        out.append(f"| {peer} | {n} | {fmt(r['value'])} | {fmt(r['min'])} | {fmt(r['max'])} | "
                   f"{r['ok']}/{r['runs']}{status} | " + " | ".join(cells) + (" |" if cells else ""))
    for p in libs:
        r = table[(p, wl)]
        extra = []
        if r["all"]:
            extra.append("every run: " + ", ".join(fmt(v) for v in r["all"]))
        if r["reached"]:
            extra.append(f"threads reached: {min(r['reached'])}–{max(r['reached'])}")
        if wl == "W4" and r["total_ms"] is not None:
            extra.append(f"total {fmt(r['total_ms'])} ms")
        if wl == "W6" and r["raw_bytes"] is not None:
            extra.append(f"raw peak RSS / N {fmt(r['raw_bytes'])} B; submit {fmt(r['ns'])} ns/task")
        if extra:
            out.append("")
            out.append(f"{p}: " + "; ".join(extra) + ".")
    out.append("")
    return out


COLORS = {"libasync": "#d62728", "libasync-t1": "#ff9896", "libasync-2tasks": "#ff9896"}


def chart(table, data_dir, svg):
    os.makedirs(data_dir, exist_ok=True)
    panels = []
    for wl, (name, _, unit, _) in WORKLOADS.items():
        rs = sorted([r for (p, w), r in table.items() if w == wl and r["value"]],
                    key=lambda r: r["value"])
        if not rs:
            continue
        path = os.path.join(data_dir, f"{wl}.dat")
        with open(path, "w") as f:
            for i, r in enumerate(rs):
                col = COLORS.get(r["peer"], "#1f77b4")
                f.write(f'{i} "{r["peer"]}" {r["value"]:.6g} {int(col[1:], 16)}\n')
        lo = min(r["value"] for r in rs)
        hi = max(r["value"] for r in rs)
        if wl == "W6":
            hi = max(hi, W6_GOAL_BYTES)
            lo = min(lo, W6_GOAL_BYTES)
        panels.append((wl, name, unit, path, len(rs), lo, hi))
    if not panels:
        return False
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    g = [f"set terminal svg size 1500,{520 * rows} dynamic enhanced font 'Helvetica,12' background '#ffffff'",
         f"set output '{svg}'",
         f"set multiplot layout {rows},{cols} title 'libasync (red) and the peers: medians, 2 threads, lower is better (log scale)'",
         "set style fill solid 0.85 border -1",
         "set boxwidth 0.7",
         "set logscale y",
         "set grid ytics mytics lc rgb '#dddddd'",
         "set xtics rotate by 40 right scale 0 font ',10' nomirror",
         "set bmargin 8",
         "unset key"]
    for wl, name, unit, path, n, lo, hi in panels:
        g.append(f"set title '{wl} {name}'")
        g.append(f"set ylabel '{unit}'")
        g.append(f"set xrange [-0.6:{n - 0.4}]")
        g.append(f"set yrange [{lo / 2:.6g}:{hi * 3:.6g}]")
        bars = (f"plot '{path}' using 1:3:4:xtic(2) with boxes lc rgb variable, "
                f"'' using 1:3:($3 >= 100 ? sprintf('%.0f', $3) : sprintf('%.3g', $3)) "
                f"with labels offset 0,0.6 font ',9'")
        if wl == "W6":
            bars += f", {W6_GOAL_BYTES} with lines dt 2 lc rgb '#d62728'"
        g.append(bars)
    g.append("unset multiplot")
    script = os.path.join(data_dir, "chart.gp")
    with open(script, "w") as f:
        f.write("\n".join(g) + "\n")
    try:
        subprocess.run(["gnuplot", script], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"report.py: gnuplot failed: {e}", file=sys.stderr)
        return False
    return True


def readme_section(table, command):
    lines = goals_md(table)
    return "\n".join([
        "`bench/bench` runs libasync on six workloads shared with a harness of peer",
        "libraries (Go, oneTBB, Java, libuv, Boost.Fiber, std::async and a naive",
        "mutex+condvar C pool); `bench/compare` runs it and the peers in interleaved",
        "rounds on the same machine and reports medians and ratios",
        "([docs/bench.md](docs/bench.md)). Ratios are libasync / peer; lower is better.",
        "",
        "```sh",
        "meson setup build-bench -Dbuildtype=debugoptimized && ninja -C build-bench",
        "build-bench/bench/bench                     # the six workloads, 2 threads",
        "build-bench/bench/bench --threads 1 --workload W4",
        "bench/compare --install                     # peers + libasync, 5 rounds (~6 min idle)",
        "```",
        "",
        f"Last run (`{command}`, 2 cores):",
        "",
        *lines,
        "",
        "![libasync and the peers](docs/bench.svg)",
        "",
        "Spawn-get (W1) and fork/join (W4) run at about oneTBB's speed: a waiter runs",
        "a task nobody has started yet, so fork/join never blocks a worker. A single",
        "round trip (W2) costs a few times oneTBB's, whose `wait()` pops the task it just",
        "pushed without publishing it to another thread. Channels (W3, W5) block OS",
        "threads: each blocking hand-off is a futex wake-up, two orders of magnitude",
        "slower than Go's goroutine switch, and the sieve needs a thread per blocked",
        "filter. Where the time goes: [docs/bench-profile.md](docs/bench-profile.md).",
    ])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--env", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--svg", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--command", default="bench/compare")
    a = ap.parse_args()
    env = dict(l.rstrip("\n").split("=", 1) for l in open(a.env) if "=" in l)
    table = load(a.raw)
    have_chart = chart(table, a.data, a.svg)

    out = ["# libasync benchmarks", "",
           f"Generated by `{a.command}` on {env.get('date', '?')}; do not edit by hand "
           "(the profile notes live in [bench-profile.md](bench-profile.md)).", "",
           "Every number is a median over fresh processes, one per (library, workload, round), "
           "the rounds interleaving libasync with every peer so that the shared machine's drifts "
           "hit all alike. Inside a process: one untimed warm-up pass (N/10; W4 fib(20); W5 100 "
           "primes; none for W6), then one timed pass on the monotonic clock. 2 threads "
           "everywhere (`libasync-t1`: a pool of 1). Ratio = libasync median / peer median: "
           "below 1 libasync is faster (or smaller). The best-run ratio divides the two "
           "fastest runs instead: on a loaded machine it is the better guess of what a quiet "
           "one would show (the load averages at the start and end of the run are in the "
           "environment table).", "",
           "## Goals", ""]
    out += goals_md(table)
    out += ["",
            "`libasync-t1`: W4 on a pool of 1 thread; `libasync-2tasks`: W3 with both parties "
            "as pool tasks (the main thread only waits). "
            "W4 is checked for pools of 1 and 2 threads against the peers' 2 threads. "
            "W5 has no ratio goal: it must complete; the pool starts a replacement worker "
            "for each filter blocked in a channel operation (threads reached).", ""]
    if have_chart:
        out += [f"![medians per workload]({os.path.basename(a.svg)})", ""]
    out += ["## Every library, per workload", ""]
    for wl in WORKLOADS:
        if any(w == wl for (_, w) in table):
            out += workload_md(table, wl)
    out += ["## How libasync runs each workload (bench/bench.c)", "",
            "* W1/W2: `async_run_on` on a pool of 2, `future_get` from the main thread, which "
            "runs a task itself when no worker has started it yet (as oneTBB's `wait`).",
            "* W3: the main thread and one pool task, two unbuffered `chan_t` of `int64_t` "
            "(the Go peer's shape).",
            "* W4: the root task runs on the pool and the main thread waits with a finite "
            "deadline (a wait that never runs tasks), so only the pool's workers compute; "
            "each call spawns fib(n-1), computes fib(n-2) inline and `future_get`s.",
            "* W5: generator + one filter task per prime on a pool of 2 with the default "
            "`max_threads`; the main thread receives the primes; the pool is then destroyed "
            "with `ASYNC_CANCEL`, which ends every blocked filter.",
            "* W6: pool with threads = max_threads = 2, both workers held on a pthread condvar "
            "gate, then 1,000,000 `async_run_on`; (peak RSS − RSS before submitting) / N.", ""]
    out += ["## Environment", "", "| | |", "|---|---|"]
    for k, v in env.items():
        v = v.replace("|", "\\|")
        out.append(f"| {k} | `{v}` |" if k == "peers" else f"| {k} | {v} |")
    out += ["", "## Proposed README section", "",
            "The text inside the fence below (without the fence) is meant for README.md's "
            "`<!-- bench:begin -->` / `<!-- bench:end -->` block, under its "
            "\"Benchmarks\" heading.", "",
            "<!-- readme:begin -->", "````markdown", readme_section(table, a.command), "````",
            "<!-- readme:end -->", ""]
    with open(a.md, "w") as f:
        f.write("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
