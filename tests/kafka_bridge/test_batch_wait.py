"""How long a group's batch may wait to fill: the deployment's per-group setting, else the
group's own declaration, else the default (kafka_bridge.consumer.runner.batch_max_wait_ms)."""

import os
import subprocess
import sys

import pytest

from kafka_bridge.consumer.runner import batch_max_wait_ms
from kafka_bridge.registry import CONSUMERS, ConsumerSpec


@pytest.fixture
def kafka_waits(settings):  # type: ignore[no-untyped-def]
    def configure(default: int, by_group: dict[str, int]) -> None:
        settings.KAFKA = {
            **settings.KAFKA,
            "CONSUMER_BATCH_MAX_WAIT_MS": default,
            "CONSUMER_BATCH_MAX_WAIT_MS_BY_GROUP": by_group,
        }

    return configure


def test_the_saga_groups_keep_the_default_and_the_groups_nobody_waits_on_wait_longer(kafka_waits):
    kafka_waits(5, {})

    waits = {name: batch_max_wait_ms(spec) for name, spec in CONSUMERS.items()}

    assert {waits[name] for name in ("inventory", "orders", "notifications")} == {5}
    assert {waits[name] for name in ("read_models", "order_rate", "webhooks")} == {250}


def test_the_deployment_overrides_a_group_whatever_it_declares(kafka_waits):
    kafka_waits(20, {"read_models": 1000, "inventory": 0})
    declared = ConsumerSpec(name="declared", batch_max_wait_ms=250)
    plain = ConsumerSpec(name="plain")

    assert batch_max_wait_ms(CONSUMERS["read_models"]) == 1000
    assert batch_max_wait_ms(CONSUMERS["inventory"]) == 0
    assert batch_max_wait_ms(declared) == 250
    assert batch_max_wait_ms(plain) == 20


def test_the_per_group_setting_is_read_from_the_environment():
    # Settings are read once per process: a fresh one, as a worker starts
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(sorted(settings.KAFKA['CONSUMER_BATCH_MAX_WAIT_MS_BY_GROUP'].items()))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ecommerce.settings",
        "KAFKA_CONSUMER_BATCH_MAX_WAIT_MS_BY_GROUP": "read_models=1000,webhooks=50",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[('read_models', 1000), ('webhooks', 50)]"
