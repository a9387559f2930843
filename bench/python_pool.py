#!/usr/bin/env python3
"""The Python peer: multiprocessing.Pool on the workloads W1-W3, as dpool's measure them.

    python_pool.py w1 [--count N] [--chunksize C]     # C = 0: Pool.map's default chunksize
    python_pool.py w2 [--count N]                     # one Pool.apply at a time, Pool(1)
    python_pool.py w3 [--count N] [--processes P]     # 10 ms of CPU a task, chunksize 1

Each prints one line, `RESULT id=<id> key=value ...`, the format of the C++ bench programs, so
that run.sh reads all of them the same way. The tasks mirror bench/tasks.hpp: square(x), and
spin_10ms(x) burning 10 ms of its thread's CPU time (not wall time, so that a busy machine
does not shorten it). As in the C++ programs, the pool is started and warmed up first, and only
the work is timed; CPU is this process plus its pool processes over the timed part, read from
/proc so that it counts the same things as the C++ side.
"""
import argparse
import multiprocessing
import os
import time


def square(x):
    return x * x


def spin_10ms(x):
    end = time.thread_time() + 0.010
    while time.thread_time() < end:
        for _ in range(200):
            pass
    return x


def process_cpu(pid):
    """User + system + reaped children's CPU seconds of one process, 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def switches(pid):
    """Context switches of every thread of one process, 0 if it is gone."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                total += sum(int(line.split()[1]) for line in f if "ctxt_switches:" in line)
    except OSError:
        pass
    return total


def switches_now(pool):
    return switches(os.getpid()) + sum(switches(p.pid) for p in pool._pool)


def cpu_now(pool):
    t = os.times()
    workers = [p.pid for p in pool._pool]  # the pool's processes; no public accessor exists
    return t.user + t.system + t.children_user + t.children_system + sum(process_cpu(p) for p in workers)


def percentile(sample, p):
    s = sorted(sample)
    rank = max(1, min(len(s), int(-(-p * len(s) // 100))))
    return s[rank - 1]


def report(ident, **values):
    print("RESULT id=" + ident + "".join(f" {k}={v:.10g}" for k, v in values.items()), flush=True)


def run_w1(args):
    xs = list(range(args.count))
    chunksize = args.chunksize or None
    with multiprocessing.Pool(args.processes) as pool:
        pool.map(square, xs[: args.warmup], chunksize)
        cpu, sw = cpu_now(pool), switches_now(pool)
        start = time.perf_counter()
        ys = pool.map(square, xs, chunksize)
        seconds = time.perf_counter() - start
        cpu, sw = cpu_now(pool) - cpu, switches_now(pool) - sw
    assert ys == [x * x for x in xs]
    report(args.id, tasks=args.count, seconds=seconds, rate=args.count / seconds, cpu=cpu, switches=sw)


def run_w2(args):
    with multiprocessing.Pool(args.processes) as pool:
        for i in range(args.warmup):
            pool.apply(square, (i,))
        us = []
        for i in range(args.count):
            start = time.perf_counter()
            y = pool.apply(square, (i,))
            us.append((time.perf_counter() - start) * 1e6)
            assert y == i * i
    report(args.id, tasks=args.count, p50=percentile(us, 50), p99=percentile(us, 99), max=max(us))


def run_w3(args):
    xs = list(range(args.count))
    with multiprocessing.Pool(args.processes) as pool:
        pool.map(spin_10ms, range(args.processes), 1)
        cpu = cpu_now(pool)
        start = time.perf_counter()
        ys = pool.map(spin_10ms, xs, 1)
        seconds = time.perf_counter() - start
        cpu = cpu_now(pool) - cpu
    assert ys == xs
    report(args.id, tasks=args.count, seconds=seconds, rate=args.count / seconds, cpu=cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=["w1", "w2", "w3"])
    parser.add_argument("--count", type=int)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--chunksize", type=int, default=0)
    parser.add_argument("--processes", type=int)
    parser.add_argument("--id", default="python")
    args = parser.parse_args()
    defaults = {"w1": (100_000, 2), "w2": (2_000, 1), "w3": (200, 2)}[args.workload]
    args.count = args.count or defaults[0]
    args.processes = args.processes or defaults[1]
    {"w1": run_w1, "w2": run_w2, "w3": run_w3}[args.workload](args)


if __name__ == "__main__":
    main()
