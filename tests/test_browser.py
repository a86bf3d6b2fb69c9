"""Pages as a browser shows them: headless Chromium at 1400 px wide against a live server,
with every other host unreachable (testing/browser.py). Each page is saved as a screenshot
(BROWSER_SCREENSHOT_DIR keeps them) and what matters on it is asserted from the DOM:

- the API docs (Swagger UI, Redoc) render offline, from our own static files;
- the admin's order list says why orders were cancelled; the order page has its lines near
  the top; the notifications list fits the window and links each order; the dead-letter
  list shows whole error classes and the messages; a dead letter of an unknown event type
  is named by that type and id.
"""

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka import Message
from django.conf import settings
from django.test import Client
from django.urls import reverse
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from kafka_bridge.client import group_name, pipeline_topics, topics_ensure
from kafka_bridge.contracts import EventDecodeError, event_decode
from kafka_bridge.dead_letters import dead_letter_store
from kafka_bridge.models import DeadLetter
from notifications.services import notification_create_for_order_change
from orders.events import OrderStatusChangedV1
from orders.models import Order
from orders.services import (
    OrderItemInput,
    order_cancel,
    order_create,
    order_mark_payment_failed,
    order_mark_reserved,
)
from testing.browser import chromium, requested_urls, screenshot
from testing.factories import customer_create, product_with_stock, staff_create
from testing.kafka import event_envelope
from testing.polling import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WIDTH = 1400


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with chromium(width=WIDTH, height=1000) as driver:
        yield driver


def _open(driver: WebDriver, url: str) -> None:
    driver.get(url)
    wait_until(
        lambda: driver.execute_script("return document.readyState") == "complete",
        timeout=30,
        message=f"{url} to load",
    )


def _fits_the_window(driver: WebDriver) -> bool:
    """Neither the page nor the admin list in it (a box of its own) scrolls sideways."""
    inner, page, list_overflow = driver.execute_script(
        "const list = document.querySelector('#changelist .results');"
        "return [window.innerWidth, document.documentElement.scrollWidth,"
        " list ? list.scrollWidth - list.clientWidth : 0];"
    )
    assert inner == WIDTH  # the window really is 1400 px wide
    return page <= inner and list_overflow <= 0


def _lines_of_text(driver: WebDriver, element: WebElement) -> float:
    """How many lines the element's text takes on screen."""
    return driver.execute_script(
        "const style = getComputedStyle(arguments[0]);"
        "const line = parseFloat(style.lineHeight) || 1.2 * parseFloat(style.fontSize);"
        "return arguments[0].getBoundingClientRect().height / line;",
        element,
    )


def _only_from(live_server_url: str, urls: list[str]) -> list[str]:
    return [url for url in urls if not url.startswith((live_server_url, "data:", "blob:"))]


# --- API docs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "rendered"),
    [
        pytest.param("/api/docs/", ".opblock-summary-path", id="swagger-ui"),
        pytest.param("/api/redoc/", ".api-content [data-section-id]", id="redoc"),
    ],
)
def test_api_docs_render_every_operation_with_no_other_host_reachable(
    live_server, browser, tmp_path, page, rendered
):
    # When the docs page is opened with the internet out of reach
    _open(browser, f"{live_server.url}{page}")

    # Then it renders every path of our schema, having loaded only our own files
    wait_until(
        lambda: browser.find_elements(By.CSS_SELECTOR, rendered),
        timeout=30,
        message=f"{page} to render the operations",
    )
    screenshot(browser, tmp_path, f"api-docs-{page.strip('/').replace('/', '-')}")
    text = browser.find_element(By.TAG_NAME, "body").text.replace("\u200b", "")
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    for path in json.loads(schema.content)["paths"]:
        assert path in text, path
    assert _only_from(live_server.url, requested_urls(browser)) == []


# --- admin ------------------------------------------------------------------------------------


@dataclass
class Shop:
    cancelled_by_customer: Order
    declined: Order
    open_order: Order  # two lines, pending
    unknown_type_letter: DeadLetter
    error_letter: DeadLetter


def _dead_letter(offset: int, value: bytes, error: Exception) -> DeadLetter:
    """Stored as the dead-letter consumer stores one, from the headers the runtime writes."""
    headers = {
        "dlq.original_topic": "orders",
        "dlq.original_partition": "3",
        "dlq.original_offset": str(offset),
        "dlq.consumer_group": "notifications",
        "dlq.error_class": f"{type(error).__module__}.{type(error).__qualname__}",
        "dlq.error_message": str(error),
        "dlq.attempts": "1",
        "dlq.failed_at": "2026-11-01T10:00:00+00:00",
    }
    message = Message(
        topic="orders.dlq",
        partition=0,
        offset=offset,
        key=b"42",
        value=value,
        headers=[(name, text.encode()) for name, text in headers.items()],
    )
    return dead_letter_store(message=message)


@pytest.fixture
def shop() -> Shop:
    """Orders cancelled both ways and one open with two lines, a notification of each, and
    two dead letters: one of an unknown event type, one a handler's error."""
    products = [product_with_stock(), product_with_stock()]
    customer = customer_create("customer-with-a-rather-long-username@example.com")

    def order(*quantities: int) -> Order:
        lines = zip(products, quantities, strict=False)
        items = [OrderItemInput(sku=product.sku, quantity=n) for product, n in lines]
        return order_create(customer=customer, items=items)[0]

    cancelled = order_cancel(order_id=order(1).id, actor="customer")
    declined = order(2)
    order_mark_reserved(order_id=declined.id)
    order_mark_payment_failed(order_id=declined.id, reason="card_declined")
    open_order = order(3, 4)
    for subject in (cancelled, declined, open_order):
        notification_create_for_order_change(
            change=OrderStatusChangedV1(
                order_id=subject.id,
                customer_id=customer.pk,
                previous_status="pending",
                status="cancelled" if subject != open_order else "reserved",
            ),
            event_id=uuid.uuid4(),
        )

    unknown = event_envelope("orders.teleported", {"order_id": str(open_order.id)})
    with pytest.raises(EventDecodeError) as decode_error:
        event_decode(unknown)
    handler_error = LookupError(
        "customer 999999999 does not exist; the order it names was placed by a customer "
        "who has since been deleted, so there is no one to notify about this change, and "
        "the event cannot be applied until the customer is restored"
    )
    valid = event_envelope("orders.reserved", {"order_id": str(open_order.id)})
    return Shop(
        cancelled_by_customer=Order.objects.get(id=cancelled.id),
        declined=Order.objects.get(id=declined.id),
        open_order=Order.objects.get(id=open_order.id),
        unknown_type_letter=_dead_letter(1, unknown, decode_error.value),
        error_letter=_dead_letter(2, valid, handler_error),
    )


@pytest.fixture
def admin_browser(live_server, browser) -> WebDriver:
    """The browser, logged in to the admin as staff with every permission."""
    staff = staff_create()
    staff.is_superuser = True
    staff.save()
    client = Client()
    client.force_login(staff)
    _open(browser, f"{live_server.url}/admin/login/")
    browser.add_cookie(
        {
            "name": settings.SESSION_COOKIE_NAME,
            "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
            "path": "/",
        }
    )
    return browser


def _show(driver: WebDriver, live_server, tmp_path, url_name: str, *args: object) -> None:  # type: ignore[no-untyped-def]
    """Open the page `url_name` (with `args`) and save its screenshot, named after it."""
    _open(driver, f"{live_server.url}{reverse(url_name, args=args)}")
    screenshot(driver, tmp_path, url_name.replace(":", "-"))


def _cell(driver: WebDriver, row_text: str, column: str) -> WebElement:
    """The `column` cell of the changelist row whose text contains `row_text`, or that has
    it as a title (a shortened id)."""
    return driver.find_element(
        By.XPATH,
        f"//table[@id='result_list']//tr[contains(., '{row_text}') or .//*[@title='{row_text}']]"
        f"/*[contains(concat(' ', @class, ' '), ' field-{column} ')]",
    )


def test_order_list_says_why_each_order_was_cancelled(live_server, admin_browser, shop, tmp_path):
    # When staff open the order list
    _show(admin_browser, live_server, tmp_path, "admin:orders_order_changelist")

    # Then each cancelled order says why: declined by the provider, or by the customer
    header = admin_browser.find_element(By.CSS_SELECTOR, "th.column-status_reason")
    assert header.text.lower() == "status reason"
    customer = _cell(admin_browser, str(shop.cancelled_by_customer.id), "status_reason")
    declined = _cell(admin_browser, str(shop.declined.id), "status_reason")
    assert customer.text == "cancelled by customer"
    assert declined.text == "payment failed: card_declined"
    # And the list fits the window: each order id on one line, linking to the order
    assert _fits_the_window(admin_browser)
    order = _cell(admin_browser, str(shop.declined.id), "order")
    order_id = order.find_element(By.CSS_SELECTOR, f"a [title='{shop.declined.id}']")
    assert order_id.text == str(shop.declined.id)[:8]
    assert _lines_of_text(admin_browser, order_id) < 1.5


def test_order_page_shows_its_lines_above_request_and_history(
    live_server, admin_browser, shop, tmp_path
):
    # When staff open an order with two lines (a tall window: the whole page in the shot)
    admin_browser.set_window_size(WIDTH, 2200)
    _show(admin_browser, live_server, tmp_path, "admin:orders_order_change", shop.open_order.id)

    # Then the lines come right after the status, above the request and history sections
    def top(heading: str) -> int:
        xpath = f"//fieldset[.//h2[normalize-space()='{heading}']]"
        return admin_browser.find_element(By.XPATH, xpath).location["y"]

    assert top("Lines") < top("Payment and shipment") < top("Request") < top("History")
    rows = admin_browser.find_elements(By.CSS_SELECTOR, ".field-lines tr")
    cells = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in rows[1:]]
    skus = [line.sku for line in shop.open_order.lines.order_by("id")]
    assert [row[0] for row in cells] == skus
    assert [row[2] for row in cells] == ["3", "4"]


def test_notifications_list_fits_1400_px_and_links_each_order(
    live_server, admin_browser, shop, tmp_path
):
    # When staff open the notifications list
    _show(admin_browser, live_server, tmp_path, "admin:notifications_notification_changelist")

    # Then it fits a 1400 px window, and each order id is a one-line link to the order
    assert _fits_the_window(admin_browser)
    links = admin_browser.find_elements(By.CSS_SELECTOR, "td.field-order a")
    assert len(links) == 3
    orders = {shop.cancelled_by_customer.id, shop.declined.id, shop.open_order.id}
    expected = {
        f"{live_server.url}{reverse('admin:orders_order_change', args=[o])}" for o in orders
    }
    assert {link.get_attribute("href") for link in links} == expected
    assert all(_lines_of_text(admin_browser, link) < 1.5 for link in links)

    # And following one opens that order's page
    link = next(a for a in links if a.get_attribute("title") == str(shop.declined.id))
    link.click()
    wait_until(lambda: str(shop.declined.id) in admin_browser.title, timeout=30)


def test_dead_letter_list_shows_whole_error_classes_and_messages(
    live_server, admin_browser, shop, tmp_path
):
    # When staff open the dead-letter list
    _show(admin_browser, live_server, tmp_path, "admin:kafka_bridge_deadletter_changelist")

    # Then each row shows its whole error class, unclipped, and the error message
    assert _fits_the_window(admin_browser)
    for letter in (shop.unknown_type_letter, shop.error_letter):
        error_class = _cell(admin_browser, letter.error_class, "error_class_name")
        assert error_class.text == letter.error_class
        assert admin_browser.execute_script(
            "return arguments[0].scrollWidth <= arguments[0].clientWidth", error_class
        )
    unknown = _cell(admin_browser, "orders.teleported", "error")
    assert unknown.text == "unknown event type 'orders.teleported'"
    # a long message is cut short in the list (it is whole on the dead letter's page)
    handler = _cell(admin_browser, "LookupError", "error")
    assert handler.text.endswith("…")
    assert shop.error_letter.error_message.startswith(handler.text.removesuffix("…"))
    assert len(shop.error_letter.error_message) > len(handler.text) >= 100


def test_a_dead_letter_of_an_unknown_event_type_is_named_by_its_type_and_id(
    live_server, admin_browser, shop, tmp_path
):
    letter = shop.unknown_type_letter
    envelope = json.loads(bytes(letter.value))

    # When staff open the dead letter of a valid JSON envelope whose type no one knows
    _show(admin_browser, live_server, tmp_path, "admin:kafka_bridge_deadletter_change", letter.pk)

    # Then the page is titled by that type, and shows the type and the id its envelope gives
    title = admin_browser.find_element(By.CSS_SELECTOR, "#content h2").text
    assert title.startswith("orders.teleported from orders")
    assert "undecodable" not in admin_browser.find_element(By.ID, "content").text
    event_type = admin_browser.find_element(By.CSS_SELECTOR, ".field-event_type .readonly")
    event_id = admin_browser.find_element(By.CSS_SELECTOR, ".field-event_id .readonly")
    assert (event_type.text, event_id.text) == ("orders.teleported", envelope["event_id"])


def test_pipeline_dashboard_shows_real_figures_and_links_the_dead_letters(
    live_server, admin_browser, shop, tmp_path, kafka_namespace
):
    # Given the pipeline's topics (the lag of each group is read from the broker)
    topics_ensure(pipeline_topics())

    # When staff follow the admin home page's link to the pipeline dashboard
    _show(admin_browser, live_server, tmp_path, "admin:index")
    admin_browser.find_element(By.LINK_TEXT, "Pipeline dashboard").click()
    wait_until(lambda: admin_browser.find_elements(By.ID, "per-minute-chart"), message="dashboard")
    screenshot(admin_browser, tmp_path, "admin-pipeline")
    assert _fits_the_window(admin_browser)

    # Then the orders are counted by status, as in the database
    def count(status: str) -> int:
        row = admin_browser.find_element(By.CSS_SELECTOR, f"tr[data-status='{status}'] td.num")
        return int(row.text)

    assert count("cancelled") == 2 and count("pending") == 1 and count("paid") == 0
    # the chart has bars for the last minutes' orders and events (the three orders fall in
    # this minute or, when a minute began since, the one before)
    bars = admin_browser.find_elements(By.CSS_SELECTOR, "#per-minute-chart rect.orders")
    assert len(bars) == 60
    assert sum(int(bar.get_attribute("data-value")) for bar in bars[-2:]) == 3
    assert max(float(bar.get_attribute("height")) for bar in bars[-2:]) > 0
    assert int(admin_browser.find_element(By.ID, "events-last-hour").text) >= 3
    # the outbox backlog: nothing was published (no relay runs here)
    assert int(admin_browser.find_element(By.ID, "outbox-pending").text) >= 3
    # lag per group, from the broker (no consumer has read anything: all of it is lag)
    inventory = admin_browser.find_element(
        By.CSS_SELECTOR, f"tr[data-group='{group_name('inventory')}']"
    )
    assert inventory.find_elements(By.CSS_SELECTOR, "td.num")[0].text != "0"  # partitions

    # And the dead letters' topic leads to them, filtered
    link = admin_browser.find_element(By.CSS_SELECTOR, "tr[data-topic='orders'] a")
    assert admin_browser.find_element(By.CSS_SELECTOR, "tr[data-topic='orders']").text.endswith(
        "2 2"
    )
    link.click()
    wait_until(lambda: "original_topic=orders" in admin_browser.current_url, message="filter")
    rows = admin_browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 2
