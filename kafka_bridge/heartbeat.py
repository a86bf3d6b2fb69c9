"""Worker liveness: the main loop of a worker touches a file, at most once a second, and an
orchestrator asks `manage.py worker_alive <worker> --max-age 60` whether it is recent.

The loop itself beats, never a thread of its own: a worker wedged in a call that does not
return stops beating, which is what a liveness check must notice. The same beat sets the
`worker_heartbeat_timestamp_seconds` gauge for Prometheus.

Workers are named `relay` and `consumer-<name>` (as the docker-compose services). The file
name carries `KAFKA_NAMESPACE`, so test runs sharing a machine never see each other's.
"""

import time
from pathlib import Path

from django.conf import settings

from kafka_bridge.metrics import HEARTBEAT

BEAT_INTERVAL_SECONDS = 1.0


def heartbeat_path(worker: str) -> Path:
    return Path(settings.WORKER_HEARTBEAT_DIR) / f"{settings.KAFKA['NAMESPACE']}{worker}.alive"


def heartbeat_age(worker: str) -> float | None:
    """Seconds since `worker` last beat, or None if it never did."""
    try:
        return max(0.0, time.time() - heartbeat_path(worker).stat().st_mtime)
    except FileNotFoundError:
        return None


class Heartbeat:
    def __init__(self, worker: str) -> None:
        self.path = heartbeat_path(worker)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._gauge = HEARTBEAT.labels(worker)
        self._next = 0.0

    def beat(self) -> None:
        """Called every loop; touches the file at most once per BEAT_INTERVAL_SECONDS."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + BEAT_INTERVAL_SECONDS
        self.path.touch()
        self._gauge.set_to_current_time()
