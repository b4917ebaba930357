"""Time and peak memory of one piece of code, measured inside a benchmark's child process (bench.engine,
bench.families start one per side, so that each side's memory is its own): a thread samples the process's
resident set size (psutil) while the code runs.

    >>> seconds, extra_mb = time_and_peak(lambda: bytearray(64 * 2**20), repeat=1)
    >>> len(seconds), extra_mb >= 60
    (1, True)
"""
from __future__ import annotations

import ctypes
import gc
import threading
import time
from typing import Callable

import psutil


def time_and_peak(run: Callable[[], object], repeat: int = 1, interval_s: float = 0.0) -> tuple[list[float], float]:
    """Run `run()` `repeat` times while a thread samples this process's resident memory every `interval_s`
    seconds (0: without pause). Returns (seconds of each run, peak MB above the level before the first run).
    The heap is collected and trimmed first, so that memory freed earlier does not hide new allocations; a
    run's result is dropped before the next run starts and kept until the last sample."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            if interval_s:
                time.sleep(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    times, out = [], None
    for _ in range(repeat):
        out = None
        t = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t)
    stop.set()
    sampler.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    del out
    return times, (peak[0] - before) / 2**20
