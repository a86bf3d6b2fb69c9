"""The texts of every kind on every channel: SMS fit one message, push is a title and a
body (valid JSON whatever the order's data holds), nothing is left unrendered."""

import uuid

import pytest

from notifications.models import Notification
from notifications.services import SMS_MAX_LENGTH, notification_render
from testing.factories import customer_create

pytestmark = pytest.mark.django_db

KINDS = [kind for kind, _ in Notification.Kind.choices]


def _context(**overrides: object) -> dict[str, object]:
    order_id = uuid.uuid4()
    return {
        "customer": customer_create("a-customer-with-a-rather-long-username-of-forty"),
        "order_id": order_id,
        "short_id": str(order_id)[:8],
        # As long as they come: a reason naming several SKUs, the API's longest carrier
        # (50 characters), a long tracking number; quotes and backslashes for JSON.
        "reason": 'out_of_stock: MUG-LOGO, "LIMITED-PRINT", POSTER\\A2, STICKER-PACK-10',
        "tracking_number": "TRK" + "0123456789" * 4 + "1234567",  # the longest: 50
        "carrier": "Deutsche Post DHL Group Express International Ltd.",
        "shipping_lines": ["Ada Lovelace", "12 St James's Square", "SW1Y 4JH London", "GB"],
        **overrides,
    }


@pytest.mark.parametrize("kind", KINDS)
def test_every_sms_fits_one_message_without_being_cut(kind):
    subject, text = notification_render(channel="sms", kind=kind, context=_context())

    assert subject == ""
    assert len(text) <= SMS_MAX_LENGTH, (len(text), text)
    assert not text.endswith("..."), "cut: the template itself is too long"
    assert "{" not in text and "\n" not in text
    assert text.isascii()  # GSM 7-bit alphabet: no typographic quotes or dashes


def test_an_sms_that_would_be_too_long_is_cut_to_one_message():
    long = _context(carrier="C" * 500, tracking_number="T" * 500)

    _, text = notification_render(channel="sms", kind="shipped", context=long)

    assert len(text) <= SMS_MAX_LENGTH


@pytest.mark.parametrize("kind", KINDS)
def test_every_push_is_a_title_and_a_body(kind):
    context = _context()

    title, body = notification_render(channel="push", kind=kind, context=context)

    assert title and body
    assert len(title) <= 60, title  # what a notification banner shows
    assert "{" not in title + body
    if kind in ("out_of_stock", "payment_failed", "cancelled"):
        assert context["reason"] in body  # quotes and backslashes survive the JSON


@pytest.mark.parametrize("kind", KINDS)
def test_every_email_has_a_subject_and_a_body(kind):
    subject, body = notification_render(channel="email", kind=kind, context=_context())

    assert subject and "\n" not in subject
    assert body.startswith("Hello a-customer-with-a-rather-long-username-of-forty,")
