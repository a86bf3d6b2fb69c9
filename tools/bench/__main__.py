"""`make bench`: the benchmark with whatever services are not configured started locally.

    python -m tools.bench [options, e.g. --gateway-latency-ms 150; --help lists them]

Uses KAFKA_BOOTSTRAP_SERVERS and REDIS_URL when set; otherwise starts a local Tansu broker
and redis-server, as `make run` does. The database must be PostgreSQL (SQLite is no
benchmark target): DATABASE_URL when set, else a fresh `ecommerce_bench` database on the
local PostgreSQL (127.0.0.1:5432, user postgres), dropped and created again on every run so
that each run starts from the same empty tables. Then migrates and runs the benchmark
(`tools.bench.cli`).
"""

from __future__ import annotations

import os
import subprocess
import sys

from tools.localservices import LocalService, LocalServiceError, start_kafka, start_redis
from tools.supervisor import REPO_ROOT, manage

BENCH_DATABASE = "ecommerce_bench"


def fresh_local_database() -> str:
    import psycopg

    try:
        admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)
    except psycopg.OperationalError as exc:
        raise LocalServiceError(
            f"no DATABASE_URL and no local PostgreSQL on 127.0.0.1:5432 ({exc})"
        ) from exc
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')
    return f"postgres://postgres@127.0.0.1:5432/{BENCH_DATABASE}"


def main(argv: list[str]) -> int:
    if {"-h", "--help"} & set(argv):  # the options, without starting any service
        return subprocess.run([sys.executable, "-m", "tools.bench.cli", "--help"]).returncode
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("DJANGO_SETTINGS_MODULE", "ecommerce.settings")
    local: list[LocalService] = []
    log_dir = REPO_ROOT / ".run" / "bench"
    try:
        if not env.get("KAFKA_BOOTSTRAP_SERVERS"):
            local.append(start_kafka(log_dir))
            env["KAFKA_BOOTSTRAP_SERVERS"] = local[-1].url
            print(f"[bench] started local Tansu broker at {local[-1].url}", flush=True)
        if not env.get("REDIS_URL"):
            local.append(start_redis(log_dir))
            env["REDIS_URL"] = local[-1].url
            print(f"[bench] started local redis-server at {local[-1].url}", flush=True)
        if not env.get("DATABASE_URL"):
            env["DATABASE_URL"] = fresh_local_database()
            print(f"[bench] fresh database {BENCH_DATABASE} on local PostgreSQL", flush=True)
        elif env["DATABASE_URL"].startswith("sqlite"):
            print("[bench] DATABASE_URL must be PostgreSQL for a benchmark", file=sys.stderr)
            return 2
        subprocess.run(
            manage("migrate", "--noinput", "-v", "0"), env=env, cwd=REPO_ROOT, check=True
        )
        bench = [sys.executable, "-m", "tools.bench.cli", *argv]
        return subprocess.run(bench, env=env, cwd=REPO_ROOT).returncode
    except (LocalServiceError, subprocess.CalledProcessError) as exc:
        print(f"[bench] {exc}", file=sys.stderr)
        return 1
    finally:
        for service in reversed(local):
            service.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
