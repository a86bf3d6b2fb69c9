"""One supervisor for the system's child processes: web server, relay, consumers, Celery.

Used by `make run` (tools.devstack: prefixed, coloured logs on the terminal), by the
test fixtures (conftest.py `pipeline`, testing.faults: logs to files, SIGTERM/SIGKILL, exit
codes) and by the benchmark (tools.bench). Every child's output goes to a log file;
with `echo=True` it is also copied to our stdout, each line prefixed with the child's name.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parent.parent
_COLOURS = itertools.cycle(["36", "33", "35", "32", "34", "31", "96", "93"])


# The consumer groups an order's saga goes through, from orders.created to its last e-mail,
# in the order their inputs become available on a backlog. The others are the read side and
# the dead-letter keeper.
SAGA_CONSUMERS = ("inventory", "orders", "notifications")


def manage(*args: str) -> list[str]:
    """argv for `manage.py <args>` with this interpreter."""
    return [sys.executable, str(REPO_ROOT / "manage.py"), *args]


def asgi_server(*, port: int, host: str = "127.0.0.1", workers: int = 1) -> list[str]:
    """argv for uvicorn serving the project's ASGI application (ecommerce.asgi): the stream
    process, and `make run`'s web server. No access log (the application writes one line per
    request); on SIGTERM, open streams get 3 s before they are closed (clients resume)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "ecommerce.asgi:application",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--lifespan",
        "off",
        "--timeout-graceful-shutdown",
        "3",
    ]


def celery(*args: str) -> list[str]:
    """argv for `celery -A ecommerce <args>` with this interpreter."""
    return [sys.executable, "-m", "celery", "-A", "ecommerce", *args, "-l", "INFO"]


class ChildTimeout(RuntimeError):
    """A child did not exit in time after SIGTERM; it has been killed."""


@dataclass
class Child:
    """One child process. Its output (stdout and stderr) is appended to `log_path`."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    echo: bool = False  # also copy each output line to our stdout, prefixed and coloured
    new_session: bool = False  # Ctrl-C in a terminal then reaches only the supervisor
    process: subprocess.Popen[bytes] | None = None
    killed: bool = False  # SIGKILLed on purpose (or known to be gone): never waited for again
    colour: str = field(default_factory=lambda: next(_COLOURS))

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        # Without echo the child writes straight to the file: nothing of ours sits in the
        # path, so its log is complete even if we stall or die.
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE if self.echo else log,
            stderr=subprocess.STDOUT,
            start_new_session=self.new_session,
        )
        if self.echo:
            threading.Thread(target=self._pump, args=(log,), daemon=True).start()
        else:
            log.close()
        return self

    def _pump(self, log: IO[bytes]) -> None:
        assert self.process is not None and self.process.stdout is not None
        prefix = f"\033[{self.colour}m{self.name:>24} |\033[0m "
        with log:
            for raw in self.process.stdout:
                log.write(raw)
                log.flush()
                sys.stdout.write(prefix + raw.decode(errors="replace"))
                sys.stdout.flush()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def request_stop(self) -> None:
        """One SIGTERM: the graceful path (a second would mean "exit now")."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]

    def wait(self, timeout: float = 20.0) -> int:
        """The exit code; after `timeout` seconds the child is killed and ChildTimeout raised."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise ChildTimeout(f"{self.name} did not exit within {timeout}s") from None

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
class Supervisor:
    """Starts children with a shared environment; stops them all, newest first."""

    env: dict[str, str]
    log_dir: Path
    echo: bool = False
    new_session: bool = False
    children: list[Child] = field(default_factory=list)

    # --- starting -----------------------------------------------------------------------
    def spawn(self, argv: list[str], *, label: str, **env: str) -> Child:
        """Start any command as a child; `env` adds to (or overrides) the shared environment."""
        child = Child(
            name=label,
            argv=argv,
            env={**self.env, **env},
            log_path=self.log_dir / f"{label}-{len(self.children)}.log",
            echo=self.echo,
            new_session=self.new_session,
        )
        self.children.append(child.start())
        return child

    def start(self, *argv: str, label: str | None = None, **env: str) -> Child:
        """Start `manage.py <argv>`."""
        return self.spawn(manage(*argv), label=label or "-".join(argv).replace("run_", ""), **env)

    def relay(self, *, label: str | None = None, **env: str) -> Child:
        return self.start("run_relay", label=label, **env)

    def consumer(self, name: str, *, label: str | None = None, **env: str) -> Child:
        return self.start("run_consumer", name, label=label, **env)

    def webhook_dispatcher(self, *, label: str | None = None, **env: str) -> Child:
        return self.start("run_webhook_dispatcher", label=label or "webhook-dispatcher", **env)

    def consumers(self, names: Iterable[str] | None = None, **env: str) -> list[Child]:
        """One process per registered consumer group (or per name given)."""
        if names is None:
            from kafka_bridge.registry import CONSUMERS  # filled as Django starts

            names = list(CONSUMERS)
        return [self.consumer(name, **env) for name in names]

    def asgi_server(self, *, port: int, label: str = "web-stream", **env: str) -> Child:
        """uvicorn on 127.0.0.1:`port` with the whole project (ecommerce.asgi)."""
        return self.spawn(asgi_server(port=port), label=label, **env)

    def celery_worker(self, **env: str) -> Child:
        """A Celery worker (solo pool: one task at a time, no forking)."""
        argv = celery(
            "worker", "--pool=solo", "--without-gossip", "--without-mingle", "--without-heartbeat"
        )
        return self.spawn(argv, label="celery-worker", **env)

    def celery_beat(self, *, schedule_file: Path, **env: str) -> Child:
        return self.spawn(
            celery("beat", "--schedule", str(schedule_file)), label="celery-beat", **env
        )

    def start_saga(self) -> None:
        """What an order needs from orders.created to its last e-mail: the relay, the saga's
        consumer groups, the dead-letter keeper and a Celery worker (not the read side, not
        the web server, not beat). Each process costs the tests seconds of start-up."""
        self.relay()
        self.consumers([*SAGA_CONSUMERS, "dead_letters"])
        self.celery_worker()

    # --- watching -----------------------------------------------------------------------
    def live(self) -> list[Child]:
        return [c for c in self.children if c.process is not None and not c.killed]

    def exited(self) -> Child | None:
        """The first child that has exited although nobody stopped it, if any."""
        return next((c for c in self.live() if not c.running), None)

    def logs(self) -> str:
        return "\n".join(f"===== {c.name} =====\n{c.log()}" for c in self.children)

    # --- stopping -----------------------------------------------------------------------
    def stop(self, timeout: float = 20.0) -> dict[str, int]:
        """SIGTERM every live child, newest first (consumers before the relay, the web
        server last when it was started first), then collect exit codes. A child that
        does not exit within `timeout` is killed and reported with code -SIGKILL."""
        live = self.live()
        for child in reversed(live):
            child.request_stop()
        codes = {}
        for index, child in enumerate(live):
            try:
                code = child.wait(timeout)
            except ChildTimeout:
                code = -signal.SIGKILL
            codes[f"{child.name}#{index}"] = code
        return codes

    def kill_all(self) -> None:
        """SIGKILL every live child at once (a second Ctrl-C)."""
        for child in self.live():
            if child.running:
                child.process.kill()  # type: ignore[union-attr]


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
