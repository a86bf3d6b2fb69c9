"""Signal handling shared by the relay and the consumers."""

import logging
import os
import signal
import threading
from types import FrameType

logger = logging.getLogger(__name__)


class StopFlag:
    """First SIGTERM/SIGINT asks the loop to stop after the work in hand; a second exits now."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> "StopFlag":
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            logger.warning("second %s: exiting immediately", signal.Signals(signum).name)
            os._exit(128 + signum)
        logger.info("%s received: finishing the work in hand", signal.Signals(signum).name)
        self.event.set()

    @property
    def stopping(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early on a stop request; True if stopping."""
        return self.event.wait(seconds)
