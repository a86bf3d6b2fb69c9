"""Event contracts: V1 upcast to V2 in one place, and the released JSON Schemas that the code
must stay compatible with (`check_event_contracts`)."""

import copy
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from kafka_bridge.contract_schemas import (
    Schema,
    contracts_check,
    payload_json_schema,
    schema_changes,
    schema_dirs,
    schema_file,
)
from kafka_bridge.contracts import event_decode
from orders.events import OrderCreatedV2, ShippingAddress
from testing.factories import SHIPPING_ADDRESS as ADDRESS
from testing.kafka import event_envelope

V1_ORDER = {
    "order_id": str(uuid.uuid4()),
    "customer_id": 7,
    "currency": "EUR",
    "total": "25.00",
    "items": [{"sku": "MUG-1", "quantity": 2, "unit_price": "12.50"}],
}


def test_a_v1_order_created_reaches_handlers_as_v2():
    event = event_decode(event_envelope("orders.created", V1_ORDER, version=1))

    assert event.envelope.schema_version == 1  # what was on the wire
    assert isinstance(event.payload, OrderCreatedV2)
    assert event.payload.sales_channel == "web"
    assert event.payload.shipping_address is None
    assert str(event.payload.order_id) == V1_ORDER["order_id"]
    assert [item.quantity for item in event.payload.items] == [2]


def test_a_v2_order_created_keeps_its_channel_and_address():
    data = {**V1_ORDER, "sales_channel": "mobile_app", "shipping_address": ADDRESS}

    event = event_decode(event_envelope("orders.created", data, version=2))

    assert event.payload.sales_channel == "mobile_app"
    assert event.payload.shipping_address == ShippingAddress(**ADDRESS)
    assert event.payload.shipping_address.postal_lines()[-2:] == ["SW1Y 4JH London", "GB"]


def test_the_released_schemas_match_the_code(capsys):
    assert contracts_check() == []
    call_command("check_event_contracts")
    assert "match their released schemas" in capsys.readouterr().out


def _released() -> Schema:
    return json.loads(schema_file("orders.created", 2).read_text())


def _remove_total(schema: Schema) -> None:
    del schema["properties"]["total"]
    schema["required"].remove("total")


def _retype_customer_id(schema: Schema) -> None:
    schema["properties"]["customer_id"] = {"type": "string"}


def _retype_nested_quantity(schema: Schema) -> None:
    schema["$defs"]["OrderItem"]["properties"]["quantity"] = {"type": "string"}


def _add_required_gift_note(schema: Schema) -> None:
    schema["properties"]["gift_note"] = {"type": "string"}
    schema["required"].append("gift_note")


def _narrow_sales_channel(schema: Schema) -> None:
    schema["properties"]["sales_channel"]["maxLength"] = 16


def _require_shipping_address(schema: Schema) -> None:
    schema["required"].append("shipping_address")


@pytest.mark.parametrize(
    ("alter", "expected"),
    [
        pytest.param(_remove_total, "field 'total' removed", id="field-removed"),
        pytest.param(
            _retype_customer_id,
            "field 'customer_id' type changed from integer to string",
            id="type-changed",
        ),
        pytest.param(
            _retype_nested_quantity,
            "field 'items[].quantity' type changed from integer to string",
            id="nested-type-changed",
        ),
        pytest.param(
            _add_required_gift_note,
            "field 'gift_note' added as required without a default",
            id="required-field-added",
        ),
        pytest.param(
            _narrow_sales_channel,
            "field 'sales_channel' edited after release: maxLength 32 → 16",
            id="limit-edited",
        ),
        pytest.param(
            _require_shipping_address,
            "field 'shipping_address' edited after release: now required",
            id="made-required",
        ),
    ],
)
def test_each_backward_incompatible_change_is_named(alter: Callable[[Schema], None], expected):
    # Given the code's schema of orders.created v2, altered as a careless edit would
    current = copy.deepcopy(payload_json_schema("orders.created", 2))
    alter(current)

    # When it is compared with the released document
    changes = schema_changes(_released(), current)

    # Then exactly that change is reported, as incompatible, naming event, version and field
    assert [c.compatible for c in changes] == [False]
    assert changes[0].describe("orders.created", 2).startswith(f"orders.created v2: {expected}")


def test_an_optional_field_or_a_docstring_is_a_compatible_change():
    current = copy.deepcopy(payload_json_schema("orders.created", 2))
    current["properties"]["gift_note"] = {"type": "string", "default": ""}
    current["description"] = "reworded"

    changes = schema_changes(_released(), current)

    assert [(c.field, c.compatible) for c in changes] == [("gift_note", True)]


@pytest.fixture
def released_copy(tmp_path: Path) -> Path:
    """Every app's released documents in one scratch directory the test may alter."""
    directory = tmp_path / "schemas"
    directory.mkdir()
    for folder in schema_dirs():
        for document in folder.glob("*.json"):
            shutil.copy(document, directory)
    return directory


def test_the_command_fails_naming_a_field_the_code_dropped(released_copy, capsys):
    # Given a released v2 that had a required field the code no longer has
    released = _released()
    released["properties"]["legacy_note"] = {"type": "string"}
    released["required"].append("legacy_note")
    schema_file("orders.created", 2, released_copy).write_text(json.dumps(released))

    # When the contracts are checked, --write included
    with pytest.raises(CommandError, match="1 backward-incompatible"):
        call_command("check_event_contracts", dir=released_copy, write=True)

    # Then the field is named, and --write did not record the breaking change
    assert "orders.created v2: field 'legacy_note' removed" in capsys.readouterr().err
    assert "legacy_note" in schema_file("orders.created", 2, released_copy).read_text()


def test_write_releases_a_new_version_and_a_removed_version_fails(released_copy):
    # Given v2 not released yet, and a v3 released that the code does not have
    schema_file("orders.created", 2, released_copy).unlink()
    shutil.copy(schema_file("orders.created", 2), schema_file("orders.created", 3, released_copy))
    assert [p.line for p in contracts_check(released_copy) if p.writable] == [
        "orders.created v2: new version, not released yet"
    ]

    # When --write runs
    with pytest.raises(CommandError, match="1 event contract problem"):
        call_command("check_event_contracts", dir=released_copy, write=True)

    # Then v2 is released exactly as checked in here, and the vanished v3 is still an error
    written = schema_file("orders.created", 2, released_copy).read_text()
    assert written == schema_file("orders.created", 2).read_text()
    assert [p.line for p in contracts_check(released_copy)] == [
        "orders.created v3: released, but gone from the code"
    ]


def test_the_command_exits_1_with_readable_lines_and_no_traceback(released_copy):
    released = _released()
    released["properties"]["total"] = {"type": "integer"}
    schema_file("orders.created", 2, released_copy).write_text(json.dumps(released))

    result = subprocess.run(
        [sys.executable, "manage.py", "check_event_contracts", "--dir", str(released_copy)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0] == (
        "orders.created v2: field 'total' type changed from integer to number | string"
    )
