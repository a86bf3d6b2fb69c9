"""HTTP load generator for the benchmark: its own process, asyncio, HTTP/1.1 keep-alive.

    python -m tools.bench.loadgen --url http://127.0.0.1:8000/api/orders/ \\
        --tokens-file tokens.txt --skus A,B --connections 16 --duration 10 --out result.json

Closed loop (default): every connection sends its next request as soon as the previous
answer arrived, for `--duration` seconds or `--count` requests: the server's capacity.
Open loop (`--rate R`): request i is due at start + i/R whatever the server does; its latency
counts from that due time, so a slow server shows up as latency instead of as fewer
requests (no coordinated omission). With `--method GET` it GETs the URL as the customers of
`--tokens-file`. Without `--tokens-file` it sends anonymous GETs (e.g. to a trivial
endpoint, to show the generator's own ceiling).

Prints nothing but a progress bar; writes a JSON result to `--out`: counts per status,
latency percentiles, the generator's own CPU time and the ids of created orders. It uses the
standard library only (and tqdm): nothing of Django is imported, so it starts fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tqdm import tqdm

ORDER_ID = re.compile(rb'"id"\s*:\s*"([0-9a-fA-F-]{36})"')


@dataclass
class Target:
    host: str
    port: int
    path: str
    tokens: list[str]
    skus: list[str]
    method: str = "POST"

    def request(self, index: int) -> bytes:
        """Request number `index`: customers and SKUs in rotation."""
        if not self.tokens:
            return (f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n").encode()
        if self.method == "GET":
            return (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Authorization: Token {self.tokens[index % len(self.tokens)]}\r\n\r\n"
            ).encode()
        sku = self.skus[index % len(self.skus)]
        body = f'{{"items":[{{"sku":"{sku}","quantity":1}}]}}'.encode()
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Token {self.tokens[index % len(self.tokens)]}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body


@dataclass
class Results:
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    order_ids: list[str] = field(default_factory=list)
    reconnects: int = 0
    first_error: str = ""

    def error(self, kind: str, detail: str) -> None:
        self.statuses[kind] += 1
        self.first_error = self.first_error or detail[:500]


class Connection:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, target: Target, results: Results) -> None:
        self.target = target
        self.results = results
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.target.host, self.target.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """One request/response exchange; (status, body)."""
        if self.writer is None:
            await self._connect()
        assert self.reader is not None and self.writer is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        if headers.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                body += await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            body = await self.reader.readexactly(int(headers.get(b"content-length", b"0")))
        if headers.get(b"connection") == b"close":
            self.results.reconnects += 1
            await self.close()
        return status, body

    async def exchange(self, request: bytes, due: float) -> None:
        """Send, wait for the answer, record status and latency (from `due`)."""
        results = self.results
        try:
            status, body = await self.send(request)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            results.error(f"error:{type(exc).__name__}", f"{type(exc).__name__}: {exc}")
            await self.close()
            return
        results.latencies_ms.append((time.perf_counter() - due) * 1000)
        results.statuses[str(status)] += 1
        if status == 201:
            found = ORDER_ID.search(body)
            if found:
                results.order_ids.append(found.group(1).decode())
        elif status >= 300:
            results.first_error = results.first_error or f"{status}: {body[:300]!r}"


async def closed_loop(
    target: Target, results: Results, *, connections: int, duration: float, count: int
) -> None:
    deadline = time.perf_counter() + duration if duration else float("inf")
    issued = 0
    bar = tqdm(total=count or None, desc="load (closed loop)", unit="req", leave=False)

    async def worker() -> None:
        nonlocal issued
        connection = Connection(target, results)
        while time.perf_counter() < deadline and (not count or issued < count):
            index = issued
            issued += 1
            now = time.perf_counter()
            await connection.exchange(target.request(index), now)
            bar.update()
        await connection.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    bar.close()


async def open_loop(
    target: Target, results: Results, *, connections: int, duration: float, rate: float
) -> None:
    total = max(1, round(duration * rate))
    due_times: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    bar = tqdm(total=total, desc=f"load ({rate:g}/s open loop)", unit="req", leave=False)

    async def scheduler() -> None:
        started = time.perf_counter()
        for index in range(total):
            due = started + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            due_times.put_nowait((index, due))
        for _ in range(connections):
            due_times.put_nowait(None)

    async def worker() -> None:
        connection = Connection(target, results)
        while (item := await due_times.get()) is not None:
            index, due = item
            await connection.exchange(target.request(index), due)
            bar.update()
        await connection.close()

    await asyncio.gather(scheduler(), *(worker() for _ in range(connections)))
    bar.close()


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def run(args: argparse.Namespace) -> dict[str, object]:
    parts = urlsplit(args.url)
    tokens = []
    if args.tokens_file:
        with open(args.tokens_file) as handle:
            tokens = [line.strip() for line in handle if line.strip()]
    target = Target(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 80,
        path=parts.path or "/",
        tokens=tokens,
        skus=[s for s in args.skus.split(",") if s],
        method=args.method,
    )
    if tokens and args.method == "POST" and not target.skus:
        raise SystemExit("--skus is required with --tokens-file")
    results = Results()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    wall_started = time.time()
    started = time.perf_counter()
    if args.rate:
        coroutine = open_loop(
            target, results, connections=args.connections, duration=args.duration, rate=args.rate
        )
    else:
        coroutine = closed_loop(
            target,
            results,
            connections=args.connections,
            duration=args.duration,
            count=args.count,
        )
    asyncio.run(coroutine)
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    answered = sum(n for status, n in results.statuses.items() if status.isdigit())
    ok = sum(n for status, n in results.statuses.items() if status.startswith("2"))
    return {
        "mode": "open" if args.rate else "closed",
        "url": args.url,
        "connections": args.connections,
        "target_rate": args.rate or None,
        "started_at": wall_started,
        "elapsed_s": elapsed,
        "requests": sum(results.statuses.values()),
        "answered": answered,
        "ok": ok,
        "errors": sum(results.statuses.values()) - ok,
        "statuses": dict(results.statuses),
        "first_error": results.first_error,
        "reconnects": results.reconnects,
        "ok_per_s": ok / elapsed if elapsed else 0.0,
        "latency_ms": {
            name: percentile(results.latencies_ms, q)
            for name, q in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))
        },
        "cpu_s": cpu,
        "cpu_share": cpu / elapsed if elapsed else 0.0,  # of one core
        "order_ids": results.order_ids,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--tokens-file", help="API tokens, one a line: POST orders as them.")
    parser.add_argument(
        "--method",
        choices=("POST", "GET"),
        default="POST",
        help="With --tokens-file: POST orders (default), or GET --url as those customers.",
    )
    parser.add_argument("--skus", default="", help="Comma-separated SKUs, used in rotation.")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=0.0, help="Seconds (0: use --count).")
    parser.add_argument("--count", type=int, default=0, help="Requests (closed loop).")
    parser.add_argument("--rate", type=float, default=0.0, help="Open loop: requests/s.")
    parser.add_argument("--out", required=True, help="Where to write the JSON result.")
    args = parser.parse_args(argv)
    if not (args.duration or args.count) or (args.rate and not args.duration):
        parser.error("give --duration (or --count for a closed loop)")
    result = run(args)
    with open(args.out, "w") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
