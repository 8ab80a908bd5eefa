#!/usr/bin/env python3
"""bench/report.py — docs/bench.md and docs/bench.svg from a compare run.

Reads the raw log written by bench/compare (the peer harness's format: one
line per run, `rep=.. label=peer:W# rc=.. secs=.. <the program's own line>`)
and its env file; writes the Markdown table of medians with the ratio
libasync / peer per workload, the goals checked (as ratios, or as absolute
bounds: W6's bytes, W5's and W7's OS threads, W7 completing), libasync's
goroutine mode against thread mode, and a gnuplot chart (one panel per
workload, log scale). With --readme, the goals table also replaces the one
between README.md's bench-table markers.

    report.py --raw RAW --env ENV --md OUT.md --svg OUT.svg --data DIR [--readme README.md] --command CMD
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
    "W3": ("ping-pong", "two parties exchange an int over two unbuffered channels, 200,000 round trips; "
           "libasync: the main thread and one pool task", "ns/op", "ns_per_op"),
    "W3T": ("ping-pong, two tasks", "W3 with both parties pool tasks; the peer row is Go's W3, "
            "two goroutines, the same definition", "ns/op", "ns_per_op"),
    "W4": ("fork/join", "fib(27) with a task per call (317,810 spawned tasks); ns per spawned task",
           "ns/op", "ns_per_op"),
    "W5": ("prime sieve", "concurrent prime sieve, first 1,000 primes, a task per filter, unbuffered channels",
           "total ms", "total_ms"),
    "W6": ("memory", "RSS per pending task: 1,000,000 tasks queued behind 2 held workers",
           "bytes/task", "bytes_per_task"),
    "W7": ("100k blocked", "100,000 tasks blocked at once on one unbuffered channel, then fed one value "
           "each; wall time from the first spawn to the last answer", "total ms", "total_ms"),
}

# Columns a workload's table shows besides its metric: (header, key).
COLUMNS = {
    "W5": [("OS threads", "os_threads")],
    "W7": [("bytes/task", "bytes_per_task"), ("OS threads", "os_threads"), ("stacks", "stacks")],
}

# Workloads whose peer rows are another workload's runs: the peers' harness
# has no W3T, and Go's W3 (two goroutines) is its definition.
ALIAS = {"W3T": ("W3", ("go",))}

# libasync's rows. libasync-thread: the same program with ASYNC_STACK_SIZE=thread
# (a blocked task holds its OS thread), shown beside goroutine mode, in no goal.
# libasync-2tasks: W3T's label in older logs.
LIB = ("libasync", "libasync-t1", "libasync-thread", "libasync-2tasks")


def rel(wl, lib, peer, goal, key="value", unit=None):
    """libasync row / peer row on `key` (medians), at most `goal`."""
    return dict(kind="ratio", wl=wl, lib=lib, peer=peer, goal=goal, key=key, unit=unit)


def limit(wl, lib, key, bound, unit, worst=False):
    """An absolute bound on libasync's median of `key` (worst=True: on every run)."""
    return dict(kind="limit", wl=wl, lib=lib, key=key, goal=bound, unit=unit, worst=worst)


def completes(wl, lib):
    return dict(kind="completes", wl=wl, lib=lib)


# The goals, in the order of the table.
GOALS = [
    rel("W1", "libasync", "tbb-taskgroup", 0.8),
    rel("W1", "libasync", "naive-c", 0.5),
    rel("W2", "libasync", "tbb-taskgroup", 2.0),
    rel("W2", "libasync", "go", 0.3),
    rel("W3T", "libasync", "go", 1.0),
    rel("W3", "libasync", "go", 1.5),
    rel("W4", "libasync", "tbb-taskgroup", 1.3),
    rel("W4", "libasync", "java-forkjoin", 0.6),
    rel("W4", "libasync-t1", "tbb-taskgroup", 1.3),
    rel("W4", "libasync-t1", "java-forkjoin", 0.6),
    rel("W5", "libasync", "go", 1.0),
    limit("W5", "libasync", "os_threads", 8, "OS threads", worst=True),
    limit("W6", "libasync", "value", 100, "bytes/task"),
    completes("W7", "libasync"),
    rel("W7", "libasync", "go", 1.0),
    rel("W7", "libasync", "go", 2.0, key="bytes_per_task", unit="bytes/task"),
    limit("W7", "libasync", "os_threads", 8, "OS threads", worst=True),
]
W6_GOAL_BYTES = 100.0
MAX_OS_THREADS = 8

# Goroutine mode against thread mode (no goal).
MODES = ("W3", "W3T", "W5", "W7")


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


# Keys that count things: shown as integers.
COUNTS = ("os_threads", "stacks", "threads_reached")


def fmtk(v, key):
    """fmt for the value of `key`: counts as integers."""
    return fmt(v) if v is None or key not in COUNTS else f"{v:,.0f}"


def fmtu(v, unit, key="value"):
    """A value and its unit, or a dash alone."""
    return "—" if v is None else f"{fmtk(v, key)} {unit}"


def span(vals):
    """min–max of a list of counts, or the one value they all share."""
    lo, hi = f"{min(vals):,.0f}", f"{max(vals):,.0f}"
    return lo if lo == hi else f"{lo}–{hi}"


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
        keys = collections.defaultdict(list)   # every numeric key of the ok runs
        for r in ok:
            for k, v in r.items():
                x = fnum(v)
                if x is not None and k not in ("rep", "rc"):
                    keys[k].append(x)
        keys["value"] = [fnum(r.get(metric)) for r in ok if fnum(r.get(metric)) is not None]
        vals = keys["value"]
        statuses = collections.Counter(
            r.get("status", "ok" if r in ok else "FAIL_rc" + r.get("rc", "?")) for r in rs)
        table[(peer, wl)] = dict(
            peer=peer, wl=wl, alias=None, n=rs[0].get("n", "?"), runs=len(rs), ok=len(ok),
            keys=keys, value=med(vals), min=min(vals) if vals else None,
            max=max(vals) if vals else None, all=vals,
            status=",".join(f"{k}x{v}" for k, v in statuses.items()))
    for wl, (src, peers) in ALIAS.items():
        for p in peers:
            if (p, src) in table and (p, wl) not in table:
                table[(p, wl)] = dict(table[(p, src)], wl=wl, alias=src)
    return table


def stat(e, key, agg=med):
    """agg over the ok runs of entry e of `key` (None when there is none)."""
    vals = e["keys"].get(key, []) if e else []
    return agg(vals) if vals else None


def label(e):
    return e["peer"] + (f" ({e['alias']})" if e.get("alias") else "")


def ratio(table, wl, lib, peer, key="value", agg=med):
    a, b = stat(table.get((lib, wl)), key, agg), stat(table.get((peer, wl)), key, agg)
    if not a or not b:
        return None
    return a / b


def yes(ok):
    return "**yes**" if ok else "no"


def runs_note(a):
    """A note when some of libasync's runs failed: its median is over the rest."""
    return "" if not a or a["ok"] == a["runs"] else f" ({a['ok']}/{a['runs']} runs ok: {a['status']})"


def goals_md(table):
    out = ["| workload | libasync | median | peer | peer median | ratio | best-run ratio | goal | met |",
           "|---|---|---:|---|---:|---:|---:|---:|:---:|"]
    for g in GOALS:
        wl, lib = g["wl"], g["lib"]
        name = f"{wl} {WORKLOADS[wl][0]}"
        a = table.get((lib, wl))
        if g["kind"] == "completes":
            done = bool(a) and a["ok"] == a["runs"] and a["ok"] > 0
            got = f"{a['ok']}/{a['runs']} runs ok" if a else "not run"
            extra = "" if not a or done else f" ({a['status']})"
            out.append(f"| {name} | {lib} | {got} | (absolute) | — | — | — | completes | {yes(done)}{extra} |")
            continue
        if g["kind"] == "limit":
            key, unit, bound = g["key"], g["unit"], g["goal"]
            v = stat(a, key, max if g["worst"] else med)
            what = fmtu(v, unit, key) + (" (worst run)" if g["worst"] and v is not None else "")
            met = "—" if v is None else yes(v <= bound) + runs_note(a)
            name += "" if key == "value" else f" ({unit})"
            out.append(f"| {name} | {lib} | {what} | (absolute) | — | — | — | ≤ {bound:g} {unit} | {met} |")
            continue
        peer, key, goal = g["peer"], g["key"], g["goal"]
        unit = g["unit"] or WORKLOADS[wl][2]
        b = table.get((peer, wl))
        r = ratio(table, wl, lib, peer, key)
        rmin = ratio(table, wl, lib, peer, key, min)
        met = "—" if r is None else yes(r <= goal)
        if r is not None and rmin is not None and (rmin <= goal) != (r <= goal):
            met += " (best runs: " + ("yes" if rmin <= goal else "no") + ")"
        if r is not None:
            met += runs_note(a)
        what = "" if key == "value" else f" ({unit})"
        out.append(f"| {name}{what} | {lib} | {fmtu(stat(a, key), unit)} | {label(b) if b else peer} | "
                   f"{fmtu(stat(b, key), unit)} | {fmt(r, 2) if r is not None else '—'} | "
                   f"{fmt(rmin, 2) if rmin is not None else '—'} | ≤ {goal:g} | {met} |")
    return out


def modes_md(table):
    """libasync in goroutine mode (the default) against thread mode, no goal."""
    rows = [wl for wl in MODES if ("libasync-thread", wl) in table]
    if not rows:
        return []
    out = ["| workload | goroutine mode | thread mode | goroutine / thread | threads reached (goroutine, thread) "
           "| OS threads (goroutine, thread) |",
           "|---|---:|---:|---:|---:|---:|"]
    for wl in rows:
        a, b = table.get(("libasync", wl)), table.get(("libasync-thread", wl))
        unit = WORKLOADS[wl][2]
        r = ratio(table, wl, "libasync", "libasync-thread")

        def worst(e, k):
            v = stat(e, k, max)
            return "—" if v is None else f"{v:,.0f}"
        cells = [fmtu(stat(a, "value"), unit) + runs_note(a), fmtu(stat(b, "value"), unit) + runs_note(b),
                 fmt(r, 2) if r is not None else "—",
                 f"{worst(a, 'threads_reached')}, {worst(b, 'threads_reached')}",
                 f"{worst(a, 'os_threads')}, {worst(b, 'os_threads')}"]
        out.append(f"| {wl} {WORKLOADS[wl][0]} | " + " | ".join(cells) + " |")
    return out


def workload_md(table, wl):
    name, desc, unit, metric = WORKLOADS[wl]
    rs = sorted([r for (p, w), r in table.items() if w == wl],
                key=lambda r: (r["value"] is None, r["value"] or 0))
    out = [f"### {wl} {name}: {desc}", ""]
    libs = [p for p in LIB if (p, wl) in table]
    cols = COLUMNS.get(wl, [])
    hdr = "| peer | n | " + unit + " (median) | min | max | " + \
        "".join(f"{h} | " for h, _ in cols) + "runs ok | " + \
        " | ".join(f"{p} / peer" for p in libs) + (" |" if libs else "|")
    out.append(hdr)
    out.append("|---|---:|---:|---:|---:|" + "---:|" * len(cols) + "---:|" + "---:|" * len(libs))
    for r in rs:
        try:
            n = f"{int(r['n']):,}"
        except ValueError:
            n = r["n"]
        cells = []
        for p in libs:
            x = ratio(table, wl, p, r["peer"])
            cells.append("—" if x is None or r["peer"] == p else f"{x:.2f}")
        peer = f"**{r['peer']}**" if r["peer"] in LIB else label(r)
        status = "" if r["ok"] == r["runs"] else f" ({r['status']})"
        more = "".join(f"{fmtk(stat(r, k), k)} | " for _, k in cols)
        out.append(f"| {peer} | {n} | {fmt(r['value'])} | {fmt(r['min'])} | {fmt(r['max'])} | {more}"
                   f"{r['ok']}/{r['runs']}{status} | " + " | ".join(cells) + (" |" if cells else ""))
    for p in libs:
        r = table[(p, wl)]
        extra = []
        if r["all"]:
            extra.append("every run: " + ", ".join(fmt(v) for v in r["all"]))
        reached = r["keys"].get("threads_reached")
        if reached:
            extra.append(f"threads reached: {span(reached)}")
        osth = r["keys"].get("os_threads")
        if osth:
            extra.append(f"OS threads: {span(osth)}")
        if wl == "W3" and stat(r, "handoff_floor_ns") is not None:
            floor = stat(r, "handoff_floor_ns")
            extra.append(f"two plain threads spinning on two cache lines, the floor of any "
                         f"two-thread design (handoff_floor_ns): {fmt(floor)} ns per round trip, "
                         f"so W3 is {r['value'] / floor:.1f} x that floor")
        if wl == "W4" and stat(r, "total_ms") is not None:
            extra.append(f"total {fmt(stat(r, 'total_ms'))} ms")
        if wl == "W6" and stat(r, "raw_bytes_per_task") is not None:
            extra.append(f"raw peak RSS / N {fmt(stat(r, 'raw_bytes_per_task'))} B; "
                         f"submit {fmt(stat(r, 'ns_per_op'))} ns/task")
        if wl == "W7" and stat(r, "bytes_per_task") is not None:
            extra.append(f"bytes per blocked task: " + ", ".join(fmt(v) for v in r["keys"]["bytes_per_task"]))
        if extra:
            out.append("")
            out.append(f"{p}: " + "; ".join(extra) + ".")
    out.append("")
    return out


COLORS = {"libasync": "#d62728", "libasync-t1": "#ff9896", "libasync-thread": "#ff9896",
          "libasync-2tasks": "#ff9896"}


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
                f.write(f'{i} "{label(r)}" {r["value"]:.6g} {int(col[1:], 16)}\n')
        lo = min(r["value"] for r in rs)
        hi = max(r["value"] for r in rs)
        if wl == "W6":
            hi = max(hi, W6_GOAL_BYTES)
            lo = min(lo, W6_GOAL_BYTES)
        panels.append((wl, name, unit, f"{wl}.dat", len(rs), lo, hi))
    if not panels:
        return False
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    g = [f"set terminal svg size 1500,{520 * rows} dynamic enhanced font 'Helvetica,12' background '#ffffff'",
         f"set output '{os.path.abspath(svg)}'",
         f"set multiplot layout {rows},{cols} title 'libasync (red; pale: a pool of 1 or thread mode) and the "
         "peers: medians, 2 threads, lower is better (log scale)'",
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
        # run in the data folder, so the chart names its data files
        # relatively and says nothing of the machine's paths
        subprocess.run(["gnuplot", "chart.gp"], check=True, cwd=data_dir)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"report.py: gnuplot failed: {e}", file=sys.stderr)
        return False
    return True


def last_run(table, command, env):
    """The line above the goals table and the table, as README.md shows them."""
    date = env.get("date", "?").split(" ")[0]
    return "\n".join([f"Last run (`{command}`, {env.get('nproc', '?')} cores, {date}):", "",
                      *goals_md(table)])


def readme_section(table, command, env):
    return "\n".join([
        "`bench/bench` runs libasync on the workloads of a harness of peer",
        "libraries (Go, oneTBB, Java, libuv, Boost.Fiber, std::async and a naive",
        "mutex+condvar C pool); `bench/compare` runs it and the peers in interleaved",
        "rounds on the same machine and reports medians and ratios",
        "([docs/bench.md](docs/bench.md)). Ratios are libasync / peer; lower is better.",
        "",
        "```sh",
        "meson setup build-bench -Dbuildtype=debugoptimized && ninja -C build-bench",
        "build-bench/bench/bench                     # W1-W7 and W3T, 2 threads",
        "build-bench/bench/bench --threads 1 --workload W4",
        "ASYNC_STACK_SIZE=thread build-bench/bench/bench --workload W5   # thread mode",
        "bench/compare --install                     # peers + libasync, 5 rounds",
        "```",
        "",
        README_BEGIN,
        last_run(table, command, env),
        README_END,
        "",
        "![libasync and the peers](docs/bench.svg)",
        "",
        "Spawn-get (W1) and fork/join (W4) run at about oneTBB's speed: a waiter runs",
        "a task nobody has started yet, so fork/join never blocks a worker. A single",
        "round trip (W2) is compared with oneTBB's `task_group`, whose `wait()` pops",
        "the task it just pushed, and with Go. Channels (W3, W3T, W5) and the",
        "100,000 blocked tasks of W7 measure goroutine mode: a task blocked in a",
        "channel parks on its own stack and its worker runs another task, so W5 and",
        "W7 are checked against 8 OS threads as well as against Go. The thread-mode",
        "rows (`libasync-thread`, `ASYNC_STACK_SIZE=thread`) show the cost of a",
        "blocked OS thread for comparison. Where the time goes:",
        "[docs/bench-profile.md](docs/bench-profile.md).",
    ])


# README.md's generated part: the line above the goals table and the table,
# between these markers inside its <!-- bench:begin --> block.
README_BEGIN = "<!-- bench-table:begin -->"
README_END = "<!-- bench-table:end -->"


def update_readme(path, table, command, env):
    """Replace the table between README_BEGIN and README_END; False when the markers are missing."""
    text = open(path).read()
    i, j = text.find(README_BEGIN), text.find(README_END)
    if i < 0 or j < i:
        return False
    text = text[:i + len(README_BEGIN)] + "\n" + last_run(table, command, env) + "\n" + text[j:]
    with open(path, "w") as f:
        f.write(text)
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--env", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--svg", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--readme", help="README.md whose generated goals table to replace")
    ap.add_argument("--command", default="bench/compare")
    a = ap.parse_args()
    env = dict(l.rstrip("\n").split("=", 1) for l in open(a.env) if "=" in l)
    table = load(a.raw)
    have_chart = chart(table, a.data, a.svg)

    added = env.get("peers_run_by_compare", "")
    if added:
        w7_source = (f"Peer entries the harness's matrix lacks were run by `bench/compare` itself, "
                     f"in every round after the harness, the same way as libasync's: {added}.")
    else:
        w7_source = "Go's W7 (`go-peer chan W7`) comes from the harness's matrix (`go:W7`)."
    out = ["# libasync benchmarks", "",
           f"Generated by `{a.command}` on {env.get('date', '?')}; do not edit by hand "
           "(the profile notes live in [bench-profile.md](bench-profile.md)).", "",
           "Every number is a median over fresh processes, one per (library, workload, round), "
           "the rounds interleaving libasync with every peer so that the shared machine's drifts "
           "hit all alike. Inside a process: one untimed warm-up pass (N/10; W4 fib(20); W5 100 "
           "primes; none for W6 and W7), then one timed pass on the monotonic clock. 2 threads "
           "everywhere (`libasync-t1`: a pool of 1). Ratio = libasync median / peer median: "
           "below 1 libasync is faster (or smaller). The best-run ratio divides the two "
           "fastest (smallest) runs instead: on a loaded machine it is the better guess of what "
           "a quiet one would show (the load averages at the start and end of the run are in the "
           "environment table).", "",
           "## Goals", ""]
    out += goals_md(table)
    out += ["",
            "`libasync` runs in goroutine mode, the default: a task blocked in the library parks "
            "on its own stack and its worker runs another task. `libasync-t1`: W4 on a pool of "
            "1 thread, checked against the peers' 2 threads. W3T is W3 with both parties pool "
            "tasks; its peer is Go's W3, which is two goroutines (the harness has no W3T). "
            "W3 keeps the main thread as one party: a plain thread, which runs the task it "
            "woke while it waits on the channel (README, \"What is not supported, and why\"). "
            f"OS threads are those of the whole process at the end of the timed pass; W5 and W7 "
            f"must stay at ≤ {MAX_OS_THREADS} in every run. W7 must complete in every run, and its "
            "bytes per blocked task are compared with Go's from the same run. " + w7_source, ""]
    modes = modes_md(table)
    if modes:
        out += ["### Goroutine mode against thread mode", "",
                "The same program with `ASYNC_STACK_SIZE=thread` (`libasync-thread`): a blocked "
                "task holds its OS thread and the pool starts a replacement worker, as before "
                "goroutine mode. These rows are in no goal; they show what goroutine mode "
                "changed. Threads reached is the pool's peak worker count; OS threads that "
                "of the process (the worst run).", ""]
        out += modes + [""]
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
            "(the Go peer's shape, with a plain thread as the main goroutine).",
            "* W3T: the same with both parties pool tasks; the main thread only waits for them "
            "(Go's W3: two goroutines).",
            "* W4: the root task runs on the pool and the main thread waits with a finite "
            "deadline (a wait that never runs tasks), so only the pool's workers compute; "
            "each call spawns fib(n-1), computes fib(n-2) inline and `future_get`s.",
            "* W5: generator + one filter task per prime on a pool of 2 with the default "
            "`max_threads`; the main thread receives the primes; the pool is then destroyed "
            "with `ASYNC_CANCEL`, which ends every blocked filter. `os_threads` is read just "
            "before that.",
            "* W6: pool with threads = max_threads = 2, both workers held on a pthread condvar "
            "gate, then 1,000,000 `async_run_on`; (peak RSS − RSS before submitting) / N.",
            "* W7: 100,000 tasks on a pool of 2, each counts itself started and blocks in "
            "`chan_recv` on one unbuffered channel; once all have started (peak RSS read "
            "then), the main thread sends 100,000 values and receives each task's answer "
            "from a buffered channel. total_ms = first spawn to last answer; bytes_per_task "
            "= (peak RSS − RSS before spawning) / N; stacks = the pool's stacks at the end. "
            "The same definition as Go's W7.",
            "* `libasync-thread`: W3, W3T and W5 with `ASYNC_STACK_SIZE=thread`. Not W7: in "
            "thread mode its 100,000 blocked tasks would need as many OS threads.", ""]
    out += ["## Environment", "", "| | |", "|---|---|"]
    for k, v in env.items():
        v = v.replace("|", "\\|")
        out.append(f"| {k} | `{v}` |" if k == "peers" else f"| {k} | {v} |")
    out += ["", "## Proposed README section", "",
            "The text inside the fence below (without the fence) is meant for README.md's "
            "`<!-- bench:begin -->` / `<!-- bench:end -->` block, under its "
            "\"Benchmarks\" heading. `bench/compare` itself only rewrites the part between "
            f"`{README_BEGIN}` and `{README_END}` there (the line above the goals table and the "
            "table); the rest of the block is written by hand.", "",
            "<!-- readme:begin -->", "````markdown", readme_section(table, a.command, env), "````",
            "<!-- readme:end -->", ""]
    with open(a.md, "w") as f:
        f.write("\n".join(out))
    if a.readme:
        if not update_readme(a.readme, table, a.command, env):
            print(f"report.py: {a.readme} has no {README_BEGIN} / {README_END} markers; "
                  "left unchanged", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
