"""Facts about the machine at hand that several stages need: usable CPUs, the CPU model and flags,
and how much of the CPUs other processes use while something is measured."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ('unknown' elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


class ForeignCpu:
    """Share of the machine's CPU time used by other processes while the block runs.

    Busy time of all CPUs from /proc/stat minus this process's own CPU time: the load average
    cannot tell, because this process's own threads count in it. None where /proc is missing.
    """

    def __enter__(self):
        self._start = (machine_busy_s(), own_cpu_s(), time.perf_counter())
        return self

    def __exit__(self, *exc):
        busy, own, wall = machine_busy_s(), own_cpu_s(), time.perf_counter()
        self.share = None
        if busy is not None and self._start[0] is not None:
            foreign = (busy - self._start[0]) - (own - self._start[1])
            self.share = round(max(0.0, foreign) / ((wall - self._start[2]) * (os.cpu_count() or 1)), 3)


def machine_busy_s() -> float | None:
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system
