"""The Django admin: who may enter, what each page shows, and the few things it may change."""

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from inventory.models import Product, Reservation, StockLevel
from inventory.services import StockRequest, stock_reserve_for_order
from kafka_bridge.models import OutboxEvent, ProcessedEvent
from notifications.models import Notification
from notifications.services import notification_create_for_order_change
from orders.events import OrderStatusChangedV1, ShippingAddress
from orders.models import Order
from orders.services import OrderItemInput, order_create
from testing.factories import SHIPPING_ADDRESS, customer_create, product_with_stock

pytestmark = pytest.mark.django_db

CHANGELISTS = [
    "admin:orders_order_changelist",
    "admin:inventory_product_changelist",
    "admin:inventory_reservation_changelist",
    "admin:notifications_notification_changelist",
    "admin:kafka_bridge_outboxevent_changelist",
    "admin:kafka_bridge_processedevent_changelist",
]


@dataclass
class World:
    order: Order
    product: Product
    reservation: Reservation
    notification: Notification
    outbox_event: OutboxEvent
    processed_event: ProcessedEvent


@pytest.fixture
def world() -> World:
    """One of everything, made through the services: an order (and its outbox row), its
    reservation and notification, and a processed-event mark."""
    customer = customer_create()
    product = product_with_stock(on_hand=20)
    order, _ = order_create(customer=customer, items=[OrderItemInput(sku=product.sku, quantity=3)])
    stock_reserve_for_order(order_id=order.id, items=[StockRequest(sku=product.sku, quantity=3)])
    notification = notification_create_for_order_change(
        change=OrderStatusChangedV1(
            order_id=order.id,
            customer_id=customer.pk,
            previous_status="pending",
            status="reserved",
        ),
        event_id=uuid.uuid4(),
    )
    processed = ProcessedEvent.objects.create(
        consumer_group="notifications", event_id=uuid.uuid4(), event_type="inventory.reserved"
    )
    return World(
        order=order,
        product=product,
        reservation=Reservation.objects.get(order_id=order.id),
        notification=notification,
        outbox_event=OutboxEvent.objects.get(aggregate_id=str(order.id)),
        processed_event=processed,
    )


def _change_url(obj: object) -> str:
    meta = obj._meta  # type: ignore[attr-defined]
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])  # type: ignore[attr-defined]


def _results(response) -> list:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.content[:500]
    return list(response.context["cl"].result_list)


def _messages(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(message) for message in response.context["messages"]]


# --- Access -------------------------------------------------------------------------------


@pytest.mark.parametrize("url_name", ["admin:index", *CHANGELISTS])
def test_anonymous_user_is_sent_to_login(client: Client, url_name: str) -> None:
    url = reverse(url_name)

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert f"next={url}" in response["Location"]


@pytest.mark.parametrize("url_name", ["admin:index", *CHANGELISTS])
def test_logged_in_customer_who_is_not_staff_is_sent_to_login(
    client: Client, url_name: str
) -> None:
    client.force_login(customer_create())

    response = client.get(reverse(url_name))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_anonymous_user_cannot_open_a_change_page(client: Client, world: World) -> None:
    response = client.get(_change_url(world.order))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("url_name", CHANGELISTS)
def test_superuser_sees_every_changelist_with_its_rows(
    admin_client: Client, world: World, url_name: str
) -> None:
    rows = _results(admin_client.get(reverse(url_name)))

    assert len(rows) >= 1


@pytest.mark.parametrize(
    "attribute",
    ["order", "product", "reservation", "notification", "outbox_event", "processed_event"],
)
def test_superuser_opens_the_change_page_of_each_model(
    admin_client: Client, world: World, attribute: str
) -> None:
    obj = getattr(world, attribute)

    response = admin_client.get(_change_url(obj))

    assert response.status_code == 200
    assert response.context["original"] == obj


# --- Orders -------------------------------------------------------------------------------


def test_order_search_by_full_uuid_finds_exactly_that_order(
    admin_client: Client, world: World
) -> None:
    other_customer = customer_create()
    other, _ = order_create(
        customer=other_customer, items=[OrderItemInput(sku=world.product.sku, quantity=1)]
    )
    url = reverse("admin:orders_order_changelist")

    assert _results(admin_client.get(url, {"q": str(world.order.id)})) == [world.order]
    assert _results(admin_client.get(url, {"q": f"  {other.id}  "})) == [other]
    assert _results(admin_client.get(url, {"q": str(uuid.uuid4())})) == []


def test_order_search_by_customer_username_and_email(admin_client: Client, world: World) -> None:
    customer = world.order.customer
    customer.email = "buyer@example.com"
    customer.save()
    url = reverse("admin:orders_order_changelist")

    assert _results(admin_client.get(url, {"q": customer.username})) == [world.order]
    assert _results(admin_client.get(url, {"q": "buyer@example"})) == [world.order]
    assert _results(admin_client.get(url, {"q": "nobody-like-this"})) == []


def test_order_list_filters_by_status(admin_client: Client, world: World) -> None:
    url = reverse("admin:orders_order_changelist")

    assert _results(admin_client.get(url, {"status__exact": "pending"})) == [world.order]
    assert _results(admin_client.get(url, {"status__exact": "reserved"})) == []


def test_order_page_shows_channel_and_address_and_the_list_filters_by_channel(
    admin_client: Client, world: World
) -> None:
    shipped, _ = order_create(
        customer=world.order.customer,
        items=[OrderItemInput(sku=world.product.sku, quantity=1)],
        sales_channel="marketplace",
        shipping_address=ShippingAddress(**SHIPPING_ADDRESS),
    )

    content = admin_client.get(_change_url(shipped)).content.decode()

    assert "Marketplace" in content
    assert escape("12 St James's Square, SW1Y 4JH London, GB") in content
    url = reverse("admin:orders_order_changelist")
    assert _results(admin_client.get(url, {"sales_channel__exact": "marketplace"})) == [shipped]
    assert _results(admin_client.get(url, {"sales_channel__exact": "web"})) == [world.order]


def test_order_page_shows_lines_but_cannot_change_the_order(
    admin_client: Client, world: World
) -> None:
    url = _change_url(world.order)

    page = admin_client.get(url)
    posted = admin_client.post(url, {"status": "reserved", "total": "0.00"})

    assert page.status_code == 200
    content = page.content.decode()
    assert world.product.sku in content  # the order line
    assert 'name="status"' not in content
    assert 'name="total"' not in content
    assert posted.status_code == 403
    world.order.refresh_from_db()
    assert (world.order.status, world.order.total) == ("pending", world.product.price * 3)


def test_orders_cannot_be_added_or_deleted_in_the_admin(admin_client: Client, world: World) -> None:
    add = admin_client.get(reverse("admin:orders_order_add"))
    delete = admin_client.post(
        reverse("admin:orders_order_delete", args=[world.order.pk]), {"post": "yes"}
    )

    assert add.status_code == 403
    assert delete.status_code == 403
    assert Order.objects.filter(pk=world.order.pk).exists()


def test_order_page_links_to_its_reservations_notifications_and_events(
    admin_client: Client, world: World
) -> None:
    content = admin_client.get(_change_url(world.order)).content.decode()
    reservations = f"{reverse('admin:inventory_reservation_changelist')}?order_id={world.order.id}"
    events = f"{reverse('admin:kafka_bridge_outboxevent_changelist')}?aggregate_id={world.order.id}"

    assert reservations in content
    assert events in content
    assert _results(admin_client.get(reservations)) == [world.reservation]
    assert _results(admin_client.get(events)) == [world.outbox_event]


# --- Inventory ----------------------------------------------------------------------------


def test_product_list_shows_on_hand_reserved_and_available(
    admin_client: Client, world: World
) -> None:
    response = admin_client.get(reverse("admin:inventory_product_changelist"))

    [product] = _results(response)
    assert (product.stock_on_hand, product.stock_reserved, product.stock_available) == (20, 3, 17)
    assert {"on_hand", "reserved", "available"} <= set(response.context["cl"].list_display)


def test_stock_level_filter_shows_only_the_products_in_that_band(admin_client: Client) -> None:
    empty = product_with_stock(on_hand=0)
    low = product_with_stock(on_hand=4)
    low_after_reservation = product_with_stock(on_hand=12)
    stock_reserve_for_order(
        order_id=uuid.uuid4(), items=[StockRequest(sku=low_after_reservation.sku, quantity=5)]
    )
    plenty = product_with_stock(on_hand=50)
    url = reverse("admin:inventory_product_changelist")

    assert set(_results(admin_client.get(url, {"stock": "low"}))) == {low, low_after_reservation}
    assert _results(admin_client.get(url, {"stock": "out"})) == [empty]
    assert _results(admin_client.get(url, {"stock": "ok"})) == [plenty]
    assert len(_results(admin_client.get(url))) == 4


def test_restock_action_asks_for_a_quantity_then_adds_it_to_each_product(
    admin_client: Client,
) -> None:
    first = product_with_stock(on_hand=2)
    second = product_with_stock(on_hand=0)
    untouched = product_with_stock(on_hand=5)
    url = reverse("admin:inventory_product_changelist")
    selection = {"action": "restock", ACTION_CHECKBOX_NAME: [first.pk, second.pk], "index": 0}

    form_page = admin_client.post(url, selection)

    assert form_page.status_code == 200
    assert 'name="quantity"' in form_page.content.decode()
    assert StockLevel.objects.get(product=first).on_hand == 2  # nothing before the form is sent

    done = admin_client.post(
        url,
        {
            "action": "restock",
            ACTION_CHECKBOX_NAME: [first.pk, second.pk],
            "apply": "Restock",
            "quantity": 7,
        },
        follow=True,
    )

    assert done.status_code == 200
    assert StockLevel.objects.get(product=first).on_hand == 9
    assert StockLevel.objects.get(product=second).on_hand == 7
    assert StockLevel.objects.get(product=untouched).on_hand == 5
    assert _messages(done) == [f"Restocked 2 products by 7 units each: {first.sku}, {second.sku}."]


def test_restock_action_rejects_a_non_positive_quantity(admin_client: Client) -> None:
    product = product_with_stock(on_hand=2)

    response = admin_client.post(
        reverse("admin:inventory_product_changelist"),
        {
            "action": "restock",
            ACTION_CHECKBOX_NAME: [product.pk],
            "apply": "Restock",
            "quantity": 0,
        },
    )

    assert response.status_code == 200
    assert response.context["form"].errors["quantity"]
    assert StockLevel.objects.get(product=product).on_hand == 2


def _product_change_data(product: Product, *, on_hand: int) -> dict[str, object]:
    stock = StockLevel.objects.get(product=product)
    return {
        "name": product.name,
        "price": str(product.price),
        "active": "on",
        "stock-TOTAL_FORMS": "1",
        "stock-INITIAL_FORMS": "1",
        "stock-MIN_NUM_FORMS": "1",
        "stock-MAX_NUM_FORMS": "1",
        "stock-0-id": str(stock.pk),
        "stock-0-product": str(product.pk),
        "stock-0-on_hand": str(on_hand),
    }


def test_on_hand_is_editable_inline_and_reserved_is_kept(
    admin_client: Client, world: World
) -> None:
    response = admin_client.post(
        _change_url(world.product), _product_change_data(world.product, on_hand=30)
    )

    assert response.status_code == 302, response.content[:2000]
    stock = StockLevel.objects.get(product=world.product)
    assert (stock.on_hand, stock.reserved) == (30, 3)


def test_on_hand_cannot_be_set_below_the_reserved_units(admin_client: Client, world: World) -> None:
    response = admin_client.post(
        _change_url(world.product), _product_change_data(world.product, on_hand=2)
    )

    assert response.status_code == 200
    assert "3 units are reserved by open orders" in response.content.decode()
    stock = StockLevel.objects.get(product=world.product)
    assert (stock.on_hand, stock.reserved) == (20, 3)


def test_product_added_in_the_admin_gets_its_stock_row(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:inventory_product_add"),
        {
            "sku": "ADMIN-1",
            "name": "Added by hand",
            "price": "5.00",
            "active": "on",
            "stock-TOTAL_FORMS": "1",
            "stock-INITIAL_FORMS": "0",
            "stock-MIN_NUM_FORMS": "1",
            "stock-MAX_NUM_FORMS": "1",
            "stock-0-on_hand": "0",
        },
    )

    assert response.status_code == 302, response.content[:2000]
    assert StockLevel.objects.get(product__sku="ADMIN-1").on_hand == 0


def test_reservations_are_read_only_and_filter_by_status(
    admin_client: Client, world: World
) -> None:
    url = reverse("admin:inventory_reservation_changelist")

    assert _results(admin_client.get(url, {"status__exact": "active"})) == [world.reservation]
    assert _results(admin_client.get(url, {"status__exact": "released"})) == []
    assert _results(admin_client.get(url, {"q": str(world.order.id)})) == [world.reservation]
    assert admin_client.get(reverse("admin:inventory_reservation_add")).status_code == 403
    assert admin_client.post(_change_url(world.reservation), {"quantity": 1}).status_code == 403


# --- Notifications ------------------------------------------------------------------------


def test_notifications_are_view_only(admin_client: Client, world: World) -> None:
    change = admin_client.post(_change_url(world.notification), {"status": "sent"})
    add = admin_client.get(reverse("admin:notifications_notification_add"))
    delete = admin_client.post(
        reverse("admin:notifications_notification_delete", args=[world.notification.pk]),
        {"post": "yes"},
    )

    assert (change.status_code, add.status_code, delete.status_code) == (403, 403, 403)
    world.notification.refresh_from_db()
    assert world.notification.status == Notification.Status.PENDING


def test_notification_search_by_order_id_username_and_subject(
    admin_client: Client, world: World
) -> None:
    url = reverse("admin:notifications_notification_changelist")
    expected = [world.notification]

    assert _results(admin_client.get(url, {"q": str(world.order.id)})) == expected
    assert _results(admin_client.get(url, {"q": world.order.customer.username})) == expected
    assert _results(admin_client.get(url, {"q": "is confirmed"})) == expected
    assert _results(admin_client.get(url, {"q": str(uuid.uuid4())})) == []


def test_notification_filters(admin_client: Client, world: World) -> None:
    url = reverse("admin:notifications_notification_changelist")

    assert _results(admin_client.get(url, {"kind__exact": "order_confirmed"})) == [
        world.notification
    ]
    assert _results(admin_client.get(url, {"kind__exact": "out_of_stock"})) == []
    assert _results(admin_client.get(url, {"status__exact": "sent"})) == []
    assert _results(admin_client.get(url, {"channel__exact": "email"})) == [world.notification]


# --- Outbox -------------------------------------------------------------------------------


def test_outbox_detail_shows_the_envelope_as_pretty_json(
    admin_client: Client, world: World
) -> None:
    envelope = OutboxEvent.objects.get(pk=world.outbox_event.pk).envelope

    content = admin_client.get(_change_url(world.outbox_event)).content.decode()

    pretty = escape(json.dumps(envelope, indent=2, ensure_ascii=False))
    assert "\n  " in pretty
    assert f">{pretty}</pre>" in content
    assert str(world.order.id) in content


def test_outbox_status_filter_and_column(admin_client: Client, world: World) -> None:
    published = world.outbox_event
    published.published_at = timezone.now()
    published.save(update_fields=["published_at"])
    pending, _ = order_create(
        customer=customer_create(), items=[OrderItemInput(sku=world.product.sku, quantity=1)]
    )
    pending_event = OutboxEvent.objects.get(aggregate_id=str(pending.id))
    url = reverse("admin:kafka_bridge_outboxevent_changelist")

    assert _results(admin_client.get(url, {"published": "published"})) == [published]
    assert _results(admin_client.get(url, {"published": "pending"})) == [pending_event]
    model_admin = admin.site.get_model_admin(OutboxEvent)
    assert model_admin.status(published) == "published"
    assert model_admin.status(pending_event) == "pending"


def test_outbox_age_is_human_readable(world: World) -> None:
    event = world.outbox_event
    event.created_at = timezone.now() - timedelta(hours=2, minutes=5)

    age = admin.site.get_model_admin(OutboxEvent).age(event)

    assert age == "2\xa0hours, 5\xa0minutes"


def test_outbox_search_by_event_aggregate_and_correlation_id(
    admin_client: Client, world: World
) -> None:
    event = world.outbox_event
    url = reverse("admin:kafka_bridge_outboxevent_changelist")

    assert _results(admin_client.get(url, {"q": str(event.event_id)})) == [event]
    assert _results(admin_client.get(url, {"q": event.aggregate_id})) == [event]
    assert _results(admin_client.get(url, {"q": event.correlation_id})) == [event]
    assert _results(admin_client.get(url, {"q": str(uuid.uuid4())})) == []


def test_outbox_and_processed_events_are_view_only(admin_client: Client, world: World) -> None:
    assert admin_client.get(reverse("admin:kafka_bridge_outboxevent_add")).status_code == 403
    assert admin_client.post(_change_url(world.outbox_event), {"attempts": 9}).status_code == 403
    assert admin_client.get(reverse("admin:kafka_bridge_processedevent_add")).status_code == 403


def test_processed_event_search_by_event_id(admin_client: Client, world: World) -> None:
    event = world.processed_event
    url = reverse("admin:kafka_bridge_processedevent_changelist")

    assert _results(admin_client.get(url, {"q": str(event.event_id)})) == [event]
    assert _results(admin_client.get(url, {"q": str(uuid.uuid4())})) == []


def test_staff_with_view_permission_only_sees_orders_and_their_lines(
    client: Client, world: World
) -> None:
    staff = customer_create()
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(staff)

    page = client.get(_change_url(world.order))
    products = client.get(reverse("admin:inventory_product_changelist"))

    assert page.status_code == 200
    assert world.product.sku in page.content.decode()
    assert products.status_code == 403
