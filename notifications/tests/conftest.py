"""Fixtures of the notifications tests."""

from collections.abc import Iterator

import pytest

from testing.http_stub import HttpStub


@pytest.fixture
def http_stub() -> Iterator[type[HttpStub]]:
    """Start real local HTTP servers (`with http_stub([500], default=200) as server:`)."""
    yield HttpStub


@pytest.fixture
def channels(settings):  # type: ignore[no-untyped-def]
    """Set channel settings for one test: `channels(sms={"BACKEND": ...}, SMS={...})`
    merges into settings.NOTIFICATIONS (backends are made again from the new settings)."""

    def configure(**changes: dict) -> None:
        current = settings.NOTIFICATIONS
        merged = {**current, "CHANNELS": {**current["CHANNELS"]}}
        for key, value in changes.items():
            if key in merged["CHANNELS"]:
                merged["CHANNELS"][key] = {**merged["CHANNELS"][key], **value}
            else:
                merged[key] = {**current[key], **value}
        settings.NOTIFICATIONS = merged

    return configure
