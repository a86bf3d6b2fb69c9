"""CPU time of process trees and of the whole machine, from /proc (Linux; elsewhere the
figures are simply absent). The machine is shared: what our processes did not use of the
busy time was used by somebody else, and the report says how much."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of one process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may hold spaces
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def tree_cpu_seconds(roots: dict[str, int], solo: frozenset[str] = frozenset()) -> dict[str, float]:
    """CPU seconds used so far by each root process and its live descendants (gunicorn's
    master and workers count as one); roots named in `solo` count without descendants."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if entry.name.isdigit() and (found := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = found
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    totals = {}
    for name, root in roots.items():
        total, stack = 0.0, [root]
        while stack:
            pid = stack.pop()
            total += stats.get(pid, (0, 0.0))[1]
            if name not in solo:
                stack += children.get(pid, [])
        totals[name] = total
    return totals


def machine_busy_seconds() -> tuple[float, float]:
    """(busy CPU seconds, idle CPU seconds) of the whole machine since boot."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0, 0.0
    values = [int(v) for v in first]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / _TICK, idle / _TICK


@dataclass
class CpuMeter:
    """CPU shares (1.0 = one core busy) of named process trees over a `with` block.
    `roots` is read at both ends: a process started meanwhile counts from zero."""

    roots: Callable[[], dict[str, int]]
    solo: frozenset[str] = frozenset()
    _start: dict[str, float] = field(default_factory=dict)
    _end: dict[str, float] = field(default_factory=dict)
    _machine: list[float] = field(default_factory=lambda: [0.0, 0.0])
    _wall: list[float] = field(default_factory=lambda: [0.0, 0.0])

    def __enter__(self) -> CpuMeter:
        self._start = tree_cpu_seconds(self.roots(), self.solo)
        self._machine[0] = machine_busy_seconds()[0]
        self._wall[0] = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self._end = tree_cpu_seconds(self.roots(), self.solo)
        self._machine[1] = machine_busy_seconds()[0]
        self._wall[1] = time.monotonic()

    def shares(self, extra: dict[str, float] | None = None) -> dict[str, float]:
        """Per tree, plus `extra` CPU seconds (e.g. the load generator's own figure), the
        machine's busy total, and the rest: busy time none of those used (PostgreSQL, the
        broker, Redis, and other users of a shared machine)."""
        wall = self._wall[1] - self._wall[0]
        if wall <= 0:
            return {}
        used = {name: max(0.0, self._end[name] - self._start.get(name, 0.0)) for name in self._end}
        used.update(extra or {})
        machine = self._machine[1] - self._machine[0]
        shares = {name: seconds / wall for name, seconds in used.items()}
        shares["machine busy"] = machine / wall
        rest = max(0.0, machine - sum(used.values()))
        shares["rest: database, broker, Redis, others"] = rest / wall
        return shares
