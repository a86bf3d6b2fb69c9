"""Fault injection for the end-to-end fault tests (tests/test_faults.py): API load from
threads, a seeded crash schedule for worker processes, service outages, and one check of
everything an order's saga must have left behind once it settled."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Sum
from rest_framework.test import APIClient

from api_tokens.services import api_token_issue
from inventory.models import Reservation, StockLevel
from kafka_bridge.models import OutboxEvent
from notifications.models import Notification
from orders.models import FakeGatewayTransaction, Order, OrderLine, Payment
from tools.localservices import LocalService
from tools.supervisor import Child, Supervisor

K = Notification.Kind

# --- what each kind of order must end with ----------------------------------------------
# "paid": stock reserved and charged; "rejected": out of stock; "declined": reserved, the
# card declined, compensated by cancelling and releasing the stock.
FINAL_STATUS = {"paid": "paid", "rejected": "rejected", "declined": "cancelled"}
EXPECTED_EVENTS = {
    "paid": Counter(
        [
            "orders.created",
            "inventory.reserved",
            "orders.reserved",
            "payments.processed",
            "orders.paid",
        ]
    ),
    "rejected": Counter(["orders.created", "inventory.failed", "orders.rejected"]),
    "declined": Counter(
        [
            "orders.created",
            "inventory.reserved",
            "orders.reserved",
            "payments.failed",
            "orders.payment_failed",
            "orders.cancelled",
        ]
    ),
}
EXPECTED_NOTIFICATIONS = {
    "paid": Counter([K.ORDER_CONFIRMED, K.PAYMENT_RECEIVED]),
    "rejected": Counter([K.OUT_OF_STOCK]),
    "declined": Counter([K.ORDER_CONFIRMED, K.PAYMENT_FAILED, K.CANCELLED]),
}
OUTCOME_OF_STATUS = {status: outcome for outcome, status in FINAL_STATUS.items()}


# --- load through the API ---------------------------------------------------------------
@dataclass(frozen=True)
class OrderRequest:
    customer: AbstractBaseUser
    sku: str
    quantity: int = 1
    payment_token: str = ""


@dataclass
class PlacedOrder:
    request: OrderRequest
    order_id: str
    status_code: int
    seconds: float


# Only a digest of an API token is stored, so the keys issued to test customers are kept
# here, one per customer, for every order they post.
_api_keys: dict[tuple[object, str], str] = {}
_api_keys_lock = threading.Lock()


def _api_key_for(customer: AbstractBaseUser) -> str:
    identity = (customer.pk, customer.get_username())  # unique within a test run
    with _api_keys_lock:
        if identity not in _api_keys:
            _api_keys[identity] = api_token_issue(user=customer)
        return _api_keys[identity]


def order_post(request: OrderRequest) -> PlacedOrder:
    """POST one order through the API as its customer (token authentication)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {_api_key_for(request.customer)}")
    started = time.monotonic()
    response = client.post(
        "/api/orders/",
        {
            "items": [{"sku": request.sku, "quantity": request.quantity}],
            "payment_token": request.payment_token,
        },
        format="json",
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 201, (response.status_code, response.content)
    return PlacedOrder(request, str(response.json()["id"]), response.status_code, elapsed)


def orders_place_concurrently(
    requests: Sequence[OrderRequest],
    *,
    workers: int = 6,
    pace: tuple[float, float] = (0.0, 0.0),
    seed: int = 0,
) -> list[PlacedOrder]:
    """POST every request from `workers` threads, each pausing `pace` (a random range of
    seconds) before each of its requests to spread the load over time. Returns the placed
    orders in request order; any answer other than 201 fails the test."""
    for customer in {r.customer.pk: r.customer for r in requests}.values():
        _api_key_for(customer)  # issued here, not by the threads at once

    def place(indexed: tuple[int, OrderRequest]) -> PlacedOrder:
        index, request = indexed
        try:
            delay = random.Random(seed * 100_003 + index).uniform(*pace)
            if delay:
                time.sleep(delay)  # pacing the load generator, not waiting for Kafka
            return order_post(request)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(place, enumerate(requests)))


# --- crashes ----------------------------------------------------------------------------
@dataclass
class Kill:
    at: float  # seconds since the schedule started
    role: str
    pid: int
    downtime: float


@dataclass
class CrashSchedule:
    """Keeps one process per role running and SIGKILLs them at random moments.

    `roles` maps a role name to the function that starts a fresh process for it. The
    schedule kills each role `kills_per_role` times in a seeded random order, waits a random
    `gap` between kills and restarts the victim after a random `downtime` (0 = at once)."""

    pipeline: Supervisor
    roles: dict[str, Callable[[], Child]]
    rng: random.Random
    kills_per_role: int = 3
    gap: tuple[float, float] = (1.0, 4.0)
    downtime: tuple[float, float] = (0.0, 1.5)
    current: dict[str, Child] = field(default_factory=dict)
    kills: list[Kill] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def start_all(self) -> None:
        for role, start in self.roles.items():
            self.current[role] = start()

    def start(self) -> CrashSchedule:
        self._thread = threading.Thread(target=self._run, name="crash-schedule", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        victims = [role for role in self.roles for _ in range(self.kills_per_role)]
        self.rng.shuffle(victims)
        started = time.monotonic()
        try:
            for role in victims:
                if self._stop.wait(self.rng.uniform(*self.gap)):
                    return
                victim = self.current[role]
                downtime = self.rng.uniform(*self.downtime)
                pid = victim.process.pid if victim.process else -1
                victim.kill()
                self.kills.append(Kill(time.monotonic() - started, role, pid, downtime))
                self._stop.wait(downtime)  # the restart below happens even when stopping
                self.current[role] = self.roles[role]()
        except BaseException as exc:  # reported by join()
            self._error = exc

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the schedule to finish; every role is left with a running process."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        self._stop.set()
        self.join(30)


# --- outages ----------------------------------------------------------------------------
@contextmanager
def service_frozen(service: LocalService) -> Iterator[float]:
    """SIGSTOP a local service for the duration of the block (an outage that keeps its
    data); SIGCONT however the block ends. Yields the monotonic time of the freeze."""
    service.freeze()
    try:
        yield time.monotonic()
    finally:
        service.thaw()


# --- observation ------------------------------------------------------------------------
def status_counts(order_ids: Iterable[str]) -> Counter[str]:
    return Counter(Order.objects.filter(id__in=list(order_ids)).values_list("status", flat=True))


def orders_settled(expected: dict[str, set[str]]) -> bool:
    """Whether every order (id → allowed final statuses) has reached one of them."""
    rows = Order.objects.filter(id__in=list(expected)).values_list("id", "status")
    statuses = {str(order_id): status for order_id, status in rows}
    return all(statuses.get(order_id) in allowed for order_id, allowed in expected.items())


@dataclass
class StockSampler:
    """Reads a product's StockLevel over and over from a thread while a test runs."""

    product_id: int
    interval: float = 0.005
    samples: list[tuple[int, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> StockSampler:
        self._thread = threading.Thread(target=self._run, name="stock-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                row = StockLevel.objects.values_list("on_hand", "reserved").get(
                    product_id=self.product_id
                )
                self.samples.append(row)
                self._stop.wait(self.interval)
        finally:
            connection.close()

    def stop(self) -> list[tuple[int, int]]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        return self.samples


def saga_violations(outcomes: dict[str, str], *, on_hand: dict[str, int]) -> list[str]:
    """Everything wrong with settled orders, as readable lines (empty: all consistent).

    `outcomes` maps order id → "paid" / "rejected" / "declined"; `on_hand` maps every SKU
    the orders used → its on-hand stock, which must not have changed (nothing shipped).
    Checks per order: final status, payment and gateway ledger (one charge, no refund),
    reservations, notification kinds (exactly one per transition), outbox events (exactly
    one per step, all published); per SKU: reserved == sum of active reservations."""
    ids = list(outcomes)
    problems: list[str] = []
    status = {str(k): v for k, v in Order.objects.filter(id__in=ids).values_list("id", "status")}
    lines: dict[str, Counter[tuple[str, int]]] = defaultdict(Counter)
    for order_id, sku, quantity in OrderLine.objects.filter(order_id__in=ids).values_list(
        "order_id", "sku", "quantity"
    ):
        lines[str(order_id)][(sku, quantity)] += 1
    payments = {
        str(k): (s, r)
        for k, s, r in Payment.objects.filter(order_id__in=ids).values_list(
            "order_id", "status", "failure_reason"
        )
    }
    gateway: dict[str, Counter[str]] = defaultdict(Counter)
    for key, kind in FakeGatewayTransaction.objects.values_list("idempotency_key", "kind"):
        gateway[key.removeprefix("order-").rsplit("-", 1)[0]][kind] += 1
    reservations: dict[str, Counter[tuple[str, str, int]]] = defaultdict(Counter)
    for order_id, sku, state, quantity in Reservation.objects.filter(order_id__in=ids).values_list(
        "order_id", "product__sku", "status", "quantity"
    ):
        reservations[str(order_id)][(sku, state, quantity)] += 1
    notifications: dict[str, Counter[str]] = defaultdict(Counter)
    for order_id, kind in Notification.objects.filter(order_id__in=ids).values_list(
        "order_id", "kind"
    ):
        notifications[str(order_id)][kind] += 1
    events: dict[str, Counter[str]] = defaultdict(Counter)
    for aggregate, event_type in OutboxEvent.objects.filter(aggregate_id__in=ids).values_list(
        "aggregate_id", "event_type"
    ):
        events[aggregate][event_type] += 1

    for order_id, outcome in outcomes.items():
        found: list[str] = []
        if status.get(order_id) != FINAL_STATUS[outcome]:
            found.append(f"status {status.get(order_id)}, expected {FINAL_STATUS[outcome]}")
        expected_payment = {
            "paid": ("captured", ""),
            "declined": ("failed", "card_declined"),
            "rejected": None,
        }[outcome]
        if payments.get(order_id) != expected_payment:
            found.append(f"payment {payments.get(order_id)}, expected {expected_payment}")
        expected_gateway = Counter() if outcome == "rejected" else Counter({"charge": 1})
        if gateway.get(order_id, Counter()) != expected_gateway:
            found.append(f"gateway calls {dict(gateway.get(order_id, {}))}")
        reservation_state = {"paid": "active", "declined": "released"}.get(outcome)
        expected_reservations = Counter(
            {(sku, reservation_state, q): n for (sku, q), n in lines[order_id].items()}
            if reservation_state
            else {}
        )
        if reservations.get(order_id, Counter()) != expected_reservations:
            found.append(f"reservations {dict(reservations.get(order_id, {}))}")
        if notifications.get(order_id, Counter()) != EXPECTED_NOTIFICATIONS[outcome]:
            found.append(f"notifications {dict(notifications.get(order_id, {}))}")
        if events.get(order_id, Counter()) != EXPECTED_EVENTS[outcome]:
            found.append(f"outbox events {dict(events.get(order_id, {}))}")
        problems += [f"{outcome} order {order_id}: {problem}" for problem in found]

    for sku, expected_on_hand in on_hand.items():
        stock = StockLevel.objects.get(product__sku=sku)
        active = (
            Reservation.objects.filter(
                product__sku=sku, status=Reservation.Status.ACTIVE
            ).aggregate(total=Sum("quantity"))["total"]
            or 0
        )
        if (stock.on_hand, stock.reserved) != (expected_on_hand, active):
            problems.append(
                f"stock {sku}: on_hand={stock.on_hand} reserved={stock.reserved}, expected "
                f"on_hand={expected_on_hand} reserved={active} (sum of active reservations)"
            )
        if stock.reserved < 0 or stock.reserved > stock.on_hand:
            problems.append(f"stock {sku}: impossible level {stock.on_hand}/{stock.reserved}")

    unpublished = _outbox_unpublished_after(OUTBOX_STAMP_WAIT_SECONDS)
    if unpublished:
        problems.append(f"{unpublished} outbox events never published")
    return problems


# A relay that has caught up stamps its last batch with its next step: the next wake-up,
# or its poll (OUTBOX_POLL_INTERVAL_SECONDS, 1 s) when wake-ups cannot reach it (Redis
# down). Events consumed downstream may so still be unstamped for a poll interval or two.
OUTBOX_STAMP_WAIT_SECONDS = 5.0


def _outbox_unpublished_after(seconds: float) -> int:
    """The outbox rows still unstamped once every row is, or `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        unpublished = OutboxEvent.objects.filter(published_at__isnull=True).count()
        if not unpublished or time.monotonic() > deadline:
            return unpublished
        time.sleep(0.05)


def notifications_complete(outcomes: dict[str, str]) -> bool:
    """Whether every order has as many notifications as its outcome calls for (their kinds
    are checked by saga_violations)."""
    expected = sum(sum(EXPECTED_NOTIFICATIONS[o].values()) for o in outcomes.values())
    return Notification.objects.filter(order_id__in=list(outcomes)).count() >= expected


def notifications_unsent(order_ids: Iterable[str]) -> int:
    return (
        Notification.objects.filter(order_id__in=list(order_ids))
        .exclude(status=Notification.Status.SENT)
        .count()
    )


def log_lines(text: str, *needles: str) -> list[str]:
    """The lines of a log that contain every needle (case-insensitive)."""
    lowered = [n.lower() for n in needles]
    return [line for line in text.splitlines() if all(n in line.lower() for n in lowered)]
