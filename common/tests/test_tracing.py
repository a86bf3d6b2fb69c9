"""Tracing's configuration (docs/tracing.md): the standard OTEL_* environment only; with no
endpoint no SDK at all; each process names itself unless OTEL_SERVICE_NAME does.

Each case runs in a fresh interpreter: a process configures tracing once, for good."""

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from testing.otlp import OtlpReceiver
from testing.polling import wait_until
from tools.supervisor import REPO_ROOT

# Configures tracing as a process would, makes one span, shuts down (which exports what is
# buffered) and prints what it found.
PROBE = """
import json, sys
from opentelemetry import trace
from common.tracing import tracing_configure, tracing_shutdown
on = tracing_configure(sys.argv[1])
with trace.get_tracer("probe").start_as_current_span("probe span"):
    pass
tracing_shutdown()
print(json.dumps({
    "on": on,
    "provider": type(trace.get_tracer_provider()).__name__,
    "sdk": any(m.startswith(("opentelemetry.sdk.trace", "opentelemetry.exporter"))
               for m in sys.modules),
}))
"""

# A worker with tracing off, as it starts: which tracer provider it has, and which of
# OpenTelemetry's tracing SDK, exporters and instrumentations it loaded. (redis-py loads the
# SDK's metrics package when it is installed; it sets nothing up.)
WORKER_PROBE = """
import json, sys
import django
django.setup()
from common.tracing import tracing_configure
tracing_configure("relay")
import kafka_bridge.relay, kafka_bridge.consumer.runner, kafka_bridge.outbox, ecommerce.celery
from opentelemetry import trace
loaded = ("opentelemetry.sdk.trace", "opentelemetry.exporter", "opentelemetry.instrumentation")
print(json.dumps([type(trace.get_tracer_provider()).__name__,
                  sorted(m for m in sys.modules if m.startswith(loaded))]))
"""

# Celery's process signals, sent as the worker and beat send them.
CELERY_PROBE = """
import json, sys
from celery import signals
import ecommerce.celery
from opentelemetry import trace
getattr(signals, sys.argv[1]).send(sender=None)
with trace.get_tracer("probe").start_as_current_span("probe span"):
    pass
signals.worker_process_shutdown.send(sender=None, pid=0, exitcode=0)
print(json.dumps({"provider": type(trace.get_tracer_provider()).__name__}))
"""


def _clean_environment(**env: str) -> dict[str, str]:
    """This process's environment without any OTEL_ variable, plus `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return {**base, "DJANGO_SETTINGS_MODULE": "ecommerce.settings", **env}


def _run(code: str, *args: str, **env: str) -> object:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO_ROOT,
        env=_clean_environment(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


def _services(receiver: OtlpReceiver) -> list[str]:
    return [span["service"] for span in receiver.spans()]


def test_without_an_endpoint_there_is_no_sdk_and_nothing_to_export():
    found = _run(PROBE, "relay")
    assert found == {"on": False, "provider": "ProxyTracerProvider", "sdk": False}


def test_a_worker_with_tracing_off_loads_no_sdk_instrumentation_or_exporter():
    assert _run(WORKER_PROBE) == ["ProxyTracerProvider", []]


def test_with_an_endpoint_spans_are_exported_under_the_process_name(receiver):
    found = _run(PROBE, "relay", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
    assert found == {"on": True, "provider": "TracerProvider", "sdk": True}
    assert _services(receiver) == ["relay"]
    (span,) = receiver.spans()
    assert span["name"] == "probe span"


def test_the_traces_endpoint_alone_is_enough(receiver):
    _run(
        PROBE,
        "consumer-inventory",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{receiver.endpoint}/v1/traces",
    )
    assert _services(receiver) == ["consumer-inventory"]


def test_otel_service_name_and_resource_attributes_win(receiver):
    _run(
        PROBE,
        "relay",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_SERVICE_NAME="relay-eu-1",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment.name=staging",
    )
    (span,) = receiver.spans()
    assert span["service"] == "relay-eu-1"
    assert span["resource"]["deployment.environment.name"] == "staging"


def test_a_service_name_in_the_resource_attributes_wins_too(receiver):
    _run(
        PROBE,
        "relay",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_RESOURCE_ATTRIBUTES="service.name=outbox-relay",
    )
    assert _services(receiver) == ["outbox-relay"]


@pytest.mark.parametrize(
    "setting",
    [
        {"OTEL_SDK_DISABLED": "true"},
        {"OTEL_TRACES_EXPORTER": "none"},
        # only OTLP over HTTP/protobuf is installed: anything else is refused, not guessed
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
    ],
    ids=["sdk-disabled", "exporter-none", "protocol-grpc"],
)
def test_settings_that_turn_tracing_off_leave_no_sdk(receiver, setting):
    found = _run(PROBE, "relay", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, **setting)
    assert found == {"on": False, "provider": "ProxyTracerProvider", "sdk": False}
    assert receiver.requests == 0


def test_the_sampler_comes_from_the_environment(receiver):
    found = _run(
        PROBE,
        "relay",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_TRACES_SAMPLER="traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0",
    )
    assert found["on"] is True
    assert receiver.spans() == []  # sampled out


@pytest.mark.parametrize(
    ("signal", "service"),
    [("worker_process_init", "celery-worker"), ("beat_init", "celery-beat")],
)
def test_celery_processes_name_themselves(receiver, signal, service):
    found = _run(CELERY_PROBE, signal, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
    assert found == {"provider": "TracerProvider"}
    # worker_process_shutdown flushed the span before the process exited
    wait_until(lambda: receiver.spans(), timeout=10, message="the span exported")
    assert _services(receiver) == [service]


def test_with_tracing_off_work_is_not_split_by_cause():
    from common import tracing

    assert not tracing.enabled  # the test run exports nothing
    causes = [uuid.uuid4(), uuid.uuid4(), None]
    assert tracing.grouped_by_cause([1, 2, 3], causes) == [(None, [1, 2, 3])]
