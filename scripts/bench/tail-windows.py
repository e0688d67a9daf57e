#!/usr/bin/env python3
"""Classifies the bad windows of saring-bench timelines (scripts/bench/tail.sh writes them).

A window is bad when its p99 is over 3x the run's median window p99 (and over 5 ms). Each bad window is put down
to what the server's scheduler figures of that window or the one before show (a queue built in one window drains
in the next):
  interference  the server's threads waited >= 20 ms on the run queue (another task had its CPU) or the hypervisor
                stole >= 20 ms from its CPU;
  saturation    the server used >= 95% of its CPU (the offered rate met its capacity: the machine slowed down);
  own stall     neither: the server was idle enough and had its CPU, yet answered late (a stall of its own).
Usage: tail-windows.py FILE.csv [FILE.csv ...]
"""
import csv
import statistics
import sys


def rows(path):
    with open(path) as handle:
        return [row for row in csv.DictReader(handle) if int(row["completed"]) > 0]


def number(row, key):
    value = row.get(key) or ""
    return float(value) if value else 0.0


def classify(path):
    windows = rows(path)
    if not windows:
        return None
    p99s = [float(row["p99_ms"]) for row in windows]
    median = statistics.median(p99s)
    counts = {"interference": 0, "saturation": 0, "own stall": 0}
    for index, row in enumerate(windows):
        p99 = float(row["p99_ms"])
        if p99 <= max(3 * median, 5.0):
            continue
        around = windows[max(0, index - 1) : index + 1]
        if any(number(r, "server_wait_ms") >= 20 or number(r, "cpus_stolen_ms") >= 20 for r in around):
            counts["interference"] += 1
        elif any(number(r, "server_cpu_ms") >= 950 for r in around):
            counts["saturation"] += 1
        else:
            counts["own stall"] += 1
    bad = sum(counts.values())
    return len(windows), median, max(p99s), bad, counts


print(f"{'timeline':<40} {'windows':>7} {'median p99':>10} {'max p99':>8} {'bad':>4}  interference saturation own-stall")
for path in sys.argv[1:]:
    result = classify(path)
    if result is None:
        continue
    total, median, worst, bad, counts = result
    print(
        f"{path:<40} {total:>7} {median:>8.2f}ms {worst:>6.1f}ms {bad:>4}  {counts['interference']:>12} "
        f"{counts['saturation']:>10} {counts['own stall']:>9}"
    )
