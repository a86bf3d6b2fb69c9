"""Run the pipeline's worker processes (relay, consumers) as children: tests and the bench."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class WorkerProcess:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    killed: bool = False

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def request_stop(self) -> None:
        """One SIGTERM: the graceful path (a second would mean "exit now")."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]

    def wait(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.name} did not stop within {timeout}s of SIGTERM") from None

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for the exit code."""
        self.request_stop()
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, no cleanup of any kind."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.killed = True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Pipeline:
    """The worker processes of one test, all in the test's own Kafka namespace."""

    env: dict[str, str]
    log_dir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def start(self, *argv: str, label: str | None = None, **env: str) -> WorkerProcess:
        """Start `manage.py <argv>`."""
        return self._start(
            [sys.executable, str(REPO_ROOT / "manage.py"), *argv],
            label=label or "-".join(argv).replace("run_", ""),
            **env,
        )

    def celery_worker(self, **env: str) -> WorkerProcess:
        """A Celery worker (solo pool: one task at a time, no forking)."""
        return self._start(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "ecommerce",
                "worker",
                "--pool=solo",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "INFO",
            ],
            label="celery-worker",
            **env,
        )

    def celery_beat(self, *, schedule_file: Path, **env: str) -> WorkerProcess:
        return self._start(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "ecommerce",
                "beat",
                "-l",
                "INFO",
                "--schedule",
                str(schedule_file),
            ],
            label="celery-beat",
            **env,
        )

    def _start(self, argv: list[str], *, label: str, **env: str) -> WorkerProcess:
        worker = WorkerProcess(
            name=label,
            argv=argv,
            env={**self.env, **env},
            log_path=self.log_dir / f"{label}-{len(self.workers)}.log",
        )
        self.workers.append(worker.start())
        return worker

    def relay(self, **env: str) -> WorkerProcess:
        return self.start("run_relay", **env)

    def consumer(self, name: str, **env: str) -> WorkerProcess:
        return self.start("run_consumer", name, **env)

    def start_all(self) -> None:
        from kafka_bridge.registry import CONSUMERS

        self.relay()
        for name in CONSUMERS:
            self.consumer(name)
        self.celery_worker()

    def stop(self) -> dict[str, int]:
        codes = {}
        live = [w for w in self.workers if w.process is not None and not w.killed]
        for worker in live:
            worker.request_stop()
        for index, worker in enumerate(live):
            codes[f"{worker.name}#{index}"] = worker.wait()
        return codes

    def logs(self) -> str:
        return "\n".join(f"===== {w.name} =====\n{w.log()}" for w in self.workers)


def current_database_url() -> str:
    """A DATABASE_URL for child processes that reaches the database this process uses
    (under pytest, the test database rather than the configured one)."""
    from urllib.parse import quote

    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    credentials = quote(db["USER"] or "")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"])
    host = f"{credentials}@{db['HOST'] or 'localhost'}"
    if db["PORT"]:
        host += f":{db['PORT']}"
    return f"postgres://{host}/{db['NAME']}"
