#!/usr/bin/env python3
"""Runs one sample at a small scale and checks what it prints.

Usage: check.py NAME EXECUTABLE

Each check_NAME function below is the specification of one sample: the
lines it must print, their order, and the timing relations that show what the
sample is about. Two kinds of checks:

  semantic  what the library guarantees: an order fixed by a wait, a hand-off
            or a join; a sleep never ending early. It must hold on every run.
  timing    what depends on the scheduler keeping up: an order between two
            sleeps of different lengths, an upper bound on elapsed time.
            Margins are a third or more of the interval they guard, and a
            sample whose only failures are timing ones is run again, up to
            ATTEMPTS times in all (the best of N, as any wall-clock
            measurement on a shared machine), so that a loaded 2-core machine
            or a sanitizer build does not fail it; a real regression fails
            every attempt.
"""
import os
import re
import shlex
import signal
import subprocess
import sys
import time

RUN_TIMEOUT = 120   # seconds for one run of a sample
ATTEMPTS = 3        # runs of a sample whose only failures are timing ones


class CheckFailed(Exception):
    """A semantic check failed: the sample is wrong."""


class TimingFailed(CheckFailed):
    """A timing check failed: the sample was slow, or the machine was busy."""


def run(exe, *args):
    """Runs the sample, echoes its output to the test log, returns its lines."""
    cmd = [exe, *map(str, args)]
    print("$ " + " ".join(cmd[1:]) if args else "$ (no arguments)", flush=True)
    # A cross build runs the sample under meson's exe_wrapper (e.g. qemu).
    wrapper = shlex.split(os.environ.get("MESON_EXE_WRAPPER", ""))
    started = time.monotonic()
    proc = subprocess.run(wrapper + cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=RUN_TIMEOUT)
    print(proc.stdout, end="")
    if proc.stderr:
        print("[stderr]\n" + proc.stderr, end="")
    print("[exit %d after %.2f s]\n" % (proc.returncode, time.monotonic() - started),
          flush=True)
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = "signal %d" % -proc.returncode
        raise CheckFailed("%s was killed by %s" % (" ".join(cmd), name))
    if proc.returncode != 0:
        raise CheckFailed("%s exited with %d" % (" ".join(cmd), proc.returncode))
    return proc.stdout.splitlines()


def sanitized(exe):
    """True for a ThreadSanitizer build: it names libtsan among the libraries
    it needs (read from the file, so that a cross build is answered too)."""
    with open(exe, "rb") as f:
        return b"libtsan.so" in f.read()


def expect(cond, what, timing=False):
    if not cond:
        raise (TimingFailed if timing else CheckFailed)(what)
    print("ok: %s%s" % (what, " (timing)" if timing else ""))


def index(lines, text):
    """Position of the one line equal to text."""
    hits = [i for i, line in enumerate(lines) if line == text]
    if len(hits) != 1:
        raise CheckFailed("expected the line %r once, found it %d times" % (text, len(hits)))
    return hits[0]


def before(lines, *texts, timing=False):
    """Each line comes once, in this order."""
    pos = [index(lines, t) for t in texts]
    expect(pos == sorted(pos), "in this order: " + " < ".join(texts), timing)


def number(lines, pattern):
    """The first group of the one line that matches pattern, as a float."""
    found = [m for m in (re.fullmatch(pattern, line) for line in lines) if m]
    if len(found) != 1:
        raise CheckFailed("expected one line matching %r, found %d" % (pattern, len(found)))
    return float(found[0].group(1))


# ---------------------------------------------------------------- goroutines

def check_goroutines(exe):
    scale = 0.1
    seed_lines = ["In main()", "About to sleep in main()", "Beginning longWait()",
                  "Beginning shortWait()", "End of shortWait()", "End of longWait()",
                  "At the end of main()"]

    out = run(exe, "--scale", scale)
    # the tasks may outlive main's sleep on a busy machine: their lines may
    # then follow the elapsed time, printed before the final drain
    expect(sorted(line for line in out if not line.startswith("elapsed: "))
           == sorted(seed_lines), "concurrent: the seed's seven lines")
    expect(out[0] == "In main()", "concurrent: 'In main()' first")
    before(out, "In main()", "About to sleep in main()")
    before(out, "Beginning longWait()", "End of longWait()")
    before(out, "Beginning shortWait()", "End of shortWait()")
    # 2 s before 5 s before main's 10 s
    before(out, "End of shortWait()", "End of longWait()", "At the end of main()",
           timing=True)
    concurrent = number(out, r"elapsed: ([0-9.]+) s")

    out = run(exe, "--sequential", "--scale", scale)
    expect(out[:-1] == ["In main()", "Beginning longWait()", "End of longWait()",
                        "Beginning shortWait()", "End of shortWait()",
                        "About to sleep in main()", "At the end of main()"],
           "sequential: the seed's lines one after the other")
    sequential = number(out, r"elapsed: ([0-9.]+) s")

    out = run(exe, "--wait", "--scale", scale)
    before(out, "In main()", "About to wait in main()", "At the end of main()")
    before(out, "Beginning longWait()", "End of longWait()", "At the end of main()")
    before(out, "Beginning shortWait()", "End of shortWait()", "At the end of main()")
    before(out, "End of shortWait()", "End of longWait()", timing=True)
    waited = number(out, r"elapsed: ([0-9.]+) s")

    n = 5000   # a few seconds even under ThreadSanitizer
    out = run(exe, "--many", n, "--scale", scale)
    before(out, "In main()", "Starting %d tasks: %d longWait, %d shortWait" % (n, n - n // 2, n // 2),
           "All %d tasks done" % n, "At the end of main()")
    many = number(out, r"elapsed: ([0-9.]+) s")
    threads = number(out, r"OS threads: ([0-9]+)")
    # a blocked task costs a stack, not a thread
    expect(threads < n / 50, "--many: %d OS threads for %d sleeping tasks" % (threads, n))
    expect(many >= 5 * scale - 0.005, "--many takes longWait's 5 s")
    # their sum would be n * 3.5 * scale: thousands of seconds. The second
    # is for starting and ending n tasks; under ThreadSanitizer each task's
    # stack is a TSan fiber (created, switched to, destroyed: about 0.5 ms a
    # task on a 2-core machine), so there it is three.
    overhead = 3.0 if sanitized(exe) else 1.0
    expect(many < 4 * 5 * scale + overhead,
           "--many (%.3f s) takes about the longest sleep, not their sum" % many, timing=True)

    slack = 0.005   # clock granularity; sleeps never end early
    expect(concurrent >= 10 * scale - slack, "concurrent takes main's 10 s sleep")
    expect(sequential >= 17 * scale - slack, "sequential takes 5 + 2 + 10 s")
    expect(waited >= 5 * scale - slack, "--wait takes longWait's 5 s")
    expect(concurrent < sequential - 3.5 * scale,
           "concurrent (%.3f s) is well under sequential (%.3f s)" % (concurrent, sequential),
           timing=True)
    expect(waited < concurrent - 2.5 * scale,
           "--wait (%.3f s) is well under sleeping (%.3f s)" % (waited, concurrent),
           timing=True)


# ---------------------------------------------------------------- futuretask

def check_futuretask(exe):
    out = run(exe)
    expect(out == ["Do something else", "Do something"], "the seed's two lines, in order")


# ------------------------------------------------------------- async_service

def check_async_service(exe):
    scale = 3   # service 150 ms, otherTask 300 ms
    out = run(exe, "--scale", scale)
    expect(len(out) == 6, "six lines")
    before(out, "Working on something else", "Task is done", "Done")
    before(out, "asyncService start.", "asyncService exited.", "Done")
    # the service (150 ms) ends while main works (300 ms), as in the seed
    expect(out[:-1] == ["Working on something else", "asyncService start.",
                        "asyncService exited.", "Task is done", "Done"],
           "the seed's lines, the future's task not waiting for main", timing=True)
    total = number(out, r"total: ([0-9.]+) ms \(one after the other: [0-9.]+ ms\)")
    expect(total >= 100 * scale - 1, "total (%.0f ms) includes otherTask" % total)
    expect(total < 150 * scale, "total (%.0f ms) is under the sequential %d ms"
           % (total, 150 * scale), timing=True)


# ----------------------------------------------------------------- safely_do

WORK = [(1, 84, 2), (2, 7, 0), (3, 99, 9), (4, 10, 5), (5, -4, 2), (6, 1, 0),
        (7, 64, 8), (8, 45, 3), (9, 12, 4), (10, 30, 0), (11, 81, 27), (12, 100, 10)]


def failure(dividend, divisor):
    if divisor == 0:
        return "cannot divide %d by zero" % dividend
    if dividend < 0:
        return "negative input %d" % dividend
    return None


LONG_WORK = [(13, 50, 5), (14, 70, 7), (15, 90, 3)]


def check_safely_do(exe):
    out = run(exe, "--scale", 0.5)
    logs = [line for line in out if line.startswith("log: ")]
    shutdown = index(out, "shutdown: cancelling the server")
    last_work = max(i for i, line in enumerate(out)
                    if line.startswith(("work #", "log: ")) and not line.endswith("cancelled"))
    expect(last_work < shutdown, "every short work ended before the shutdown")
    failed = 0
    for ident, dividend, divisor in WORK:
        why = failure(dividend, divisor)
        if why is None:
            index(out, "work #%d: %d / %d = %d" % (ident, dividend, divisor,
                                                  int(dividend / divisor)))
            continue
        failed += 1
        line = 'Work failed with "%s" in work #%d (%d / %d)' % (why, ident, dividend, divisor)
        expect(index(out, line) > shutdown, "reported after the server stopped: " + line)
        expect(sum(why in log for log in logs) == 1, "the pool logged: " + why)
    stopped = index(out, "server: stopped; its scope reports a failed request")
    for ident, dividend, divisor in LONG_WORK:
        expect(shutdown < index(out, "work #%d: cancelled" % ident) < stopped,
               "the shutdown cancelled work #%d in flight" % ident)
        expect(index(out, "Work cancelled at shutdown: work #%d (%d / %d)"
                     % (ident, dividend, divisor)) > stopped, "reported: work #%d" % ident)
    ok = len(WORK) - failed
    expect(len(logs) == failed, "one log line per failed work")
    expect(out[-1] == "summary: %d ok, %d failed, %d cancelled, %d logged"
           % (ok, failed, len(LONG_WORK), failed), "summary: %d ok, %d failed" % (ok, failed))


# ----------------------------------------------------------------- fork_join

def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def check_fork_join(exe):
    for args in ([20], [20, "--threads", 1], [16, "--threads", 3], [0], [1]):
        n = args[0]
        out = run(exe, *args)
        expect("fib(%d) = %d (correct)" % (n, fib(n)) in out, "fib(%d) = %d" % (n, fib(n)))
        expect("tasks: %d" % (2 * fib(n + 1) - 1) in out, "a task at every call")
        number(out, r"time: ([0-9.]+) s")
        number(out, r"tasks per second: ([0-9.]+)")


# -------------------------------------------------------- async_service_chan

def check_async_service_chan(exe):
    scale = 3   # service 150 ms, otherTask 300 ms
    out = run(exe, "--scale", scale)
    expect(len(out) == 6, "unbuffered: six lines")
    before(out, "Working on something else", "Task is done", "Done")
    # the rendezvous: the send completes only once main, done with its
    # other task, receives
    before(out, "asyncService start.", "asyncService exited.")
    before(out, "Task is done", "asyncService exited.")
    before(out, "Working on something else", "asyncService start.", "Task is done",
           timing=True)
    number(out, r"capacity 0: the service was blocked in its send for ([0-9.]+) ms")

    out = run(exe, "--buffered", "--scale", scale)
    expect(len(out) == 6, "buffered: six lines")
    before(out, "Working on something else", "Task is done", "Done")
    before(out, "asyncService start.", "asyncService exited.")
    expect(out[:-1] == ["Working on something else", "asyncService start.",
                        "asyncService exited.", "Task is done", "Done"],
           "buffered: the service exits without waiting for main", timing=True)
    blocked = number(out, r"capacity 1: the service was blocked in its send for ([0-9.]+) ms")
    expect(blocked < 25 * scale, "buffered: the send did not wait (%.0f ms)" % blocked,
           timing=True)


# --------------------------------------------------------------------- sieve

def primes(count):
    found, n = [], 2
    while len(found) < count:
        if all(n % p for p in found):
            found.append(n)
        n += 1
    return found


def check_sieve(exe):
    for count in (100, 1, 25):
        out = run(exe, count)
        ends = [i for i, line in enumerate(out)
                if re.fullmatch(r"\d+ primes in [0-9.]+ ms", line)]
        expect(len(ends) == 1, "one line with the count and the time")
        end = ends[0]
        printed = [int(tok) for line in out[:end] for tok in line.split()]
        expect(printed == primes(count), "the first %d primes" % count)
        expect(out[end].startswith("%d primes in " % count), "the count: %d" % count)
        expect(re.fullmatch(r"%d of %d tasks ended by cancellation \(\d+ before they started\)"
                            % (count + 1, count + 1), out[-1]) is not None,
               "generator and %d filters ended by the cancelling shutdown" % count)


# -------------------------------------------------------------- backpressure

def section(out, title):
    start = index(out, title)
    values = {}
    for line in out[start + 1:start + 5]:
        key, value = line.strip().split(":", 1)
        values[key] = float(value.split()[0])
    return values


def check_backpressure(exe):
    capacity, items, scale = 4, 40, 2   # the consumer takes 10 ms per item
    work = 5 * scale
    out = run(exe, "--capacity", capacity, "--items", items, "--scale", scale)
    chan = section(out, "channel (capacity %d):" % capacity)
    mailbox = section(out, "mailbox (unbounded):")
    expect(chan["peak queued"] <= capacity,
           "channel: at most %d queued (peak %d)" % (capacity, chan["peak queued"]))
    expect(mailbox["peak queued"] >= items / 2,
           "mailbox: the queue grows (peak %d of %d)" % (mailbox["peak queued"], items),
           timing=True)
    held = (items - 1 - capacity) * work   # the last send waits for item items-1-K
    expect(chan["producer done"] >= held * 0.95,
           "channel: the producer is held to the consumer's pace (%.0f ms >= %.0f ms)"
           % (chan["producer done"], held))
    expect(chan["producer blocked"] >= held * 0.5,
           "channel: the producer spent its time blocked (%.0f ms)" % chan["producer blocked"],
           timing=True)
    expect(mailbox["producer done"] < held / 3,
           "mailbox: the producer is never held back (%.1f ms)" % mailbox["producer done"],
           timing=True)
    expect(out[-1] == "peak queued: channel %d, mailbox %d"
           % (chan["peak queued"], mailbox["peak queued"]), "both peaks on the last line")
    expect(all("(%d items)" % items in line for line in out if "consumer done" in line),
           "every item consumed, twice")


# ------------------------------------------------------------------ crawler

SITE = "https://golang.org/"


def check_crawler(exe):
    scale = 2   # fetches of 60-80 ms, a 400 ms timeout
    out = run(exe, "--scale", scale)
    root = 'found: %s "The Go Programming Language"' % SITE
    cmd = "not found: %scmd/" % SITE
    pkg = 'found: %spkg/ "Packages"' % SITE
    fmt = 'found: %spkg/fmt/ "Package fmt"' % SITE
    os_ = 'found: %spkg/os/ "Package os"' % SITE
    net = "timed out: %spkg/net/ (after %d ms)" % (SITE, 200 * scale)
    expect(sorted(out[:-1]) == sorted([root, cmd, pkg, fmt, os_, net]),
           "every page once, the slow one timed out")
    # a page is fetched only once a page linking to it was
    before(out, root, pkg, fmt)
    before(out, root, cmd)
    before(out, pkg, os_, net)
    summary = r"crawl: 4 found, 1 not found, 1 timed out in ([0-9.]+) ms; " \
              r"at most (\d+) fetches at once; scope: ok"
    took = number(out, summary)
    most = int(re.fullmatch(summary, out[-1]).group(2))
    expect(1 <= most <= 2, "at most 2 fetches at once (the semaphore), saw %d" % most)
    expect(took >= 200 * scale, "the crawl (%.0f ms) outlasts the timeout" % took)
    expect(took < 5000 * scale, "the crawl (%.0f ms) ends before its deadline" % took,
           timing=True)
    # The deadline scope: a crawl cut short cancels what is still running,
    # and the scope's close reports it.
    out = run(exe, "--scale", scale, "--deadline", 50)
    number(out, r"crawl deadline passed with ([0-9]+) fetches unfinished")
    took = number(out, r"crawl: \d+ found, \d+ not found, \d+ timed out in ([0-9.]+) ms; "
                       r"at most \d+ fetches at once; scope: Operation canceled")
    expect(took >= 50 * scale, "the crawl (%.0f ms) lasted until its deadline" % took)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: check.py NAME EXECUTABLE")
    name, exe = sys.argv[1], sys.argv[2]
    check = globals().get("check_" + name)
    if check is None:
        sys.exit("no checks for " + name)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            check(exe)
            break
        except TimingFailed as e:
            print("TIMING: %s (attempt %d of %d)\n" % (e, attempt, ATTEMPTS), flush=True)
            if attempt == ATTEMPTS:
                print("FAILED: timing, on every attempt", flush=True)
                sys.exit(1)
        except (CheckFailed, subprocess.TimeoutExpired) as e:
            print("FAILED: %s" % e, flush=True)
            sys.exit(1)
    print("PASSED: %s%s" % (name, " (attempt %d)" % attempt if attempt > 1 else ""))


if __name__ == "__main__":
    main()
