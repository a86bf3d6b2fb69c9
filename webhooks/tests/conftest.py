from collections.abc import Iterator

import pytest

from tools.webhook_receiver import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A local receiver on 127.0.0.1 that verifies signatures (its secret set by the test)."""
    running = WebhookReceiver().start()
    yield running
    running.stop()


@pytest.fixture
def allow_private(settings) -> None:  # type: ignore[no-untyped-def]
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOW_PRIVATE": True}


@pytest.fixture
def refuse_private(settings) -> None:  # type: ignore[no-untyped-def]
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOW_PRIVATE": False}
