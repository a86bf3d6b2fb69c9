"""CPU time of process trees, of local services and of the whole machine, from /proc (Linux;
elsewhere the figures are simply absent). The machine is shared: what our processes did not
use of the busy time was used by the services and by somebody else, and the report says how
much."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# Local services by the kernel's process name (`comm`, at most 15 characters): PostgreSQL's
# backends, the test broker or a local Apache Kafka (a JVM), redis-server.
SERVICES = {
    "PostgreSQL": ("postgres",),
    "broker": ("tansu", "java"),
    "Redis": ("redis-server",),
}


@dataclass(frozen=True)
class _Process:
    name: str
    parent: int
    cpu_seconds: float


def _processes() -> dict[int, _Process]:
    found = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:  # it exited meanwhile
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # the name may hold spaces and ")"
        found[int(entry.name)] = _Process(
            name=raw[raw.index("(") + 1 : raw.rindex(")")],
            parent=int(fields[1]),
            cpu_seconds=(int(fields[11]) + int(fields[12])) / _TICK,
        )
    return found


def tree_cpu_seconds(
    roots: dict[str, int],
    solo: frozenset[str] = frozenset(),
    processes: dict[int, _Process] | None = None,
) -> dict[str, float]:
    """CPU seconds used so far by each root process and its live descendants (gunicorn's
    master and workers count as one); roots named in `solo` count without descendants."""
    processes = _processes() if processes is None else processes
    children: dict[int, list[int]] = {}
    for pid, process in processes.items():
        children.setdefault(process.parent, []).append(pid)
    totals = {}
    for name, root in roots.items():
        total, stack = 0.0, [root]
        while stack:
            pid = stack.pop()
            total += processes[pid].cpu_seconds if pid in processes else 0.0
            if name not in solo:
                stack += children.get(pid, [])
        totals[name] = total
    return totals


def services_cpu_seconds(processes: dict[int, _Process]) -> dict[str, dict[int, float]]:
    """Per local service, the CPU seconds so far of each of its live processes."""
    return {
        service: {
            pid: process.cpu_seconds
            for pid, process in processes.items()
            if process.name.startswith(prefixes)
        }
        for service, prefixes in SERVICES.items()
    }


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
    _services: list[dict[str, dict[int, float]]] = field(default_factory=list)
    _machine: list[float] = field(default_factory=lambda: [0.0, 0.0])
    _wall: list[float] = field(default_factory=lambda: [0.0, 0.0])

    def __enter__(self) -> CpuMeter:
        processes = _processes()
        self._start = tree_cpu_seconds(self.roots(), self.solo, processes)
        self._services = [services_cpu_seconds(processes)]
        self._machine[0] = machine_busy_seconds()[0]
        self._wall[0] = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        processes = _processes()
        self._end = tree_cpu_seconds(self.roots(), self.solo, processes)
        self._services.append(services_cpu_seconds(processes))
        self._machine[1] = machine_busy_seconds()[0]
        self._wall[1] = time.monotonic()

    @property
    def wall_seconds(self) -> float:
        return self._wall[1] - self._wall[0]

    def shares(self, extra: dict[str, float] | None = None) -> dict[str, float]:
        """Per tree, plus `extra` CPU seconds (e.g. the load generator's own figure), the
        machine's busy total, the local services (PostgreSQL, the broker, Redis) when they
        run on this machine, and the rest: busy time none of those used (processes that
        exited meanwhile, such as a closed connection's backend, and other users of a
        shared machine)."""
        wall = self._wall[1] - self._wall[0]
        if wall <= 0:
            return {}
        used = {name: max(0.0, self._end[name] - self._start.get(name, 0.0)) for name in self._end}
        used.update(extra or {})
        machine = self._machine[1] - self._machine[0]
        shares = {name: seconds / wall for name, seconds in used.items()}
        shares["machine busy"] = machine / wall
        before, after = self._services
        for service, processes in after.items():
            # A process started meanwhile counts from zero, as in `roots`.
            seconds = sum(t - before[service].get(pid, 0.0) for pid, t in processes.items())
            if processes:
                shares[f"{service} (local)"] = seconds / wall
                used[service] = seconds
        rest = max(0.0, machine - sum(used.values()))
        shares["rest: other processes"] = rest / wall
        return shares
