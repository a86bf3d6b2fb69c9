"""The benchmark command runs end to end and prints its table (figures are not asserted)."""

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.integration


def test_bench_pipeline_prints_a_table(transactional_db, capsys):
    call_command(
        "bench_pipeline", orders=10, concurrency=2, baseline_messages=500, drain_events=100
    )

    table = capsys.readouterr().out
    for row in ("API intake (orders/s)", "created→last notice p99", "relay drain", "raw produce"):
        assert row in table
    assert "| API errors" in table and table.rstrip().endswith("|          0 |  |")
