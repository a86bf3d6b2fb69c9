"""Faults against real processes, the real broker, Redis and PostgreSQL: workers SIGKILLed
mid-flow, the broker frozen, Redis unreachable or frozen, two inventory consumers racing a
restock. Each test ends by checking every order's whole saga (testing.faults)."""

import json
import random
import threading
import time
from collections import Counter

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum

from inventory.models import Reservation, StockLevel
from inventory.services import stock_restock
from kafka_bridge.client import topic_name
from kafka_bridge.models import OutboxEvent
from notifications.models import Notification
from notifications.tasks import notifications_deliver_pending
from orders.models import FakeGatewayTransaction, Order, Payment
from testing.factories import customer_create, order_place_via_api, product_with_stock
from testing.faults import (
    OUTCOME_OF_STATUS,
    CrashSchedule,
    OrderRequest,
    StockSampler,
    log_lines,
    notifications_complete,
    notifications_unsent,
    order_post,
    orders_place_concurrently,
    orders_settled,
    saga_violations,
    service_frozen,
    status_counts,
)
from testing.kafka import message_reproduce, topic_read_all
from testing.polling import wait_until
from testing.saga import wait_for_status
from testing.services import SERVICES
from tools.localservices import LocalService, free_port
from tools.supervisor import SAGA_CONSUMERS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 20240611


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):  # type: ignore[no-untyped-def]
    # Hundreds of customers: the default PBKDF2 costs ~0.5 s each on our 2-core machines.
    # Only this process creates users; the API authenticates them by token.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _local_service_or_skip(name: str) -> LocalService:
    service = SERVICES.local.get(name)
    if service is None:
        source = SERVICES.kafka_source if name == "kafka" else SERVICES.redis_source
        pytest.skip(f"{name} comes from {source!r}, not started by this harness: cannot freeze it")
    return service


def _wait_settled(allowed: dict[str, set[str]], *, timeout: float) -> float:
    """Wait until every order is in one of its allowed statuses; return the seconds taken."""
    started = time.monotonic()
    try:
        wait_until(lambda: orders_settled(allowed), timeout=timeout, interval=0.25)
    except AssertionError:
        unpublished = OutboxEvent.objects.filter(published_at__isnull=True).count()
        raise AssertionError(
            f"orders not settled within {timeout}s: {dict(status_counts(allowed))}, "
            f"{unpublished} outbox events unpublished"
        ) from None
    return time.monotonic() - started


def _wait_all_published(timeout: float = 30) -> None:
    wait_until(
        lambda: not OutboxEvent.objects.filter(published_at__isnull=True).exists(),
        timeout=timeout,
        interval=0.25,
        message="every outbox event published",
    )


def _outcomes(order_ids) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """order id → "paid" / "rejected" / "declined" (cancelled after a declined card)."""
    rows = Order.objects.filter(id__in=list(order_ids)).values_list("id", "status")
    return {str(order_id): OUTCOME_OF_STATUS.get(status, status) for order_id, status in rows}


def _wait_notifications_created(outcomes: dict[str, str], *, timeout: float = 60) -> float:
    started = time.monotonic()
    wait_until(
        lambda: notifications_complete(outcomes),
        timeout=timeout,
        interval=0.25,
        message="every notification created",
    )
    return time.monotonic() - started


def _deliver_notifications(pipeline, order_ids, *, first_wait: float = 15) -> int:  # type: ignore[no-untyped-def]
    """Wait until every notification of these orders was sent. Those still unsent after
    `first_wait` seconds were never queued (their creator died between commit and enqueue,
    or could not reach Celery's broker): the pending-notifications sweep queues them, run
    now rather than by beat a minute later. Returns how many were left for the sweep."""
    order_ids = list(order_ids)
    deadline = time.monotonic() + first_wait
    while notifications_unsent(order_ids) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = notifications_unsent(order_ids)
    if left:
        queue = pipeline.env["CELERY_TASK_DEFAULT_QUEUE"]
        notifications_deliver_pending.apply_async(kwargs={"older_than_seconds": 0}, queue=queue)
        wait_until(
            lambda: notifications_unsent(order_ids) == 0,
            timeout=30,
            interval=0.5,
            message="every notification sent after the sweep",
        )
    return left


# --- 1. crashes -------------------------------------------------------------------------
CRASH_ORDERS = 320
SCARCE_UNITS = 25
PLENTY_UNITS = 10_000


def test_workers_sigkilled_mid_flow_lose_nothing_and_repeat_nothing(pipeline):
    # Given a plentiful and a scarce product and 320 orders from 40 customers: most to be
    # paid, ~20% for the scarce product (one unit each, more orders than units), ~15% with a
    # card that is declined
    rng = random.Random(SEED)
    plenty = product_with_stock(on_hand=PLENTY_UNITS)
    scarce = product_with_stock(on_hand=SCARCE_UNITS)
    customers = [customer_create() for _ in range(40)]
    requests = []
    for _ in range(CRASH_ORDERS):
        customer, roll = rng.choice(customers), rng.random()
        if roll < 0.15:
            requests.append(OrderRequest(customer, plenty.sku, rng.randint(1, 3), "tok_decline"))
        elif roll < 0.35:
            requests.append(OrderRequest(customer, scarce.sku, 1))
        else:
            requests.append(OrderRequest(customer, plenty.sku, rng.randint(1, 3)))
    pipeline.celery_worker()
    schedule = CrashSchedule(
        pipeline,
        roles={
            "relay": pipeline.relay,
            **{name: (lambda name=name: pipeline.consumer(name)) for name in SAGA_CONSUMERS},
        },
        rng=rng,
        kills_per_role=3,
        gap=(1.0, 3.5),
        downtime=(0.0, 1.5),
    )
    schedule.start_all()

    # When they are placed through the API from 6 threads over ~20 s while the relay and
    # each consumer are SIGKILLed 3 times at random moments (and restarted)
    started = time.monotonic()
    schedule.start()
    try:
        placed = orders_place_concurrently(requests, workers=6, pace=(0.0, 0.5), seed=SEED)
    except BaseException:
        schedule.stop()
        raise
    placing = time.monotonic() - started
    schedule.join(timeout=120)
    assert schedule.done and len(schedule.kills) == 12
    assert all(worker.running for worker in schedule.current.values())

    # Then every order settles: none stays pending, reserved or payment_failed
    allowed = {}
    for order in placed:
        if order.request.payment_token:
            allowed[order.order_id] = {"cancelled"}
        elif order.request.sku == scarce.sku:
            allowed[order.order_id] = {"paid", "rejected"}
        else:
            allowed[order.order_id] = {"paid"}
    _wait_settled(allowed, timeout=180)
    settled = time.monotonic() - started
    _wait_all_published()
    outcomes = _outcomes(allowed)
    _wait_notifications_created(outcomes)
    swept = _deliver_notifications(pipeline, allowed)

    # and each saga ran exactly once: one charge per order past reservation and no refund,
    # its reservation active (paid) or released (declined), one notification per transition,
    # one outbox event per step, all published; reserved == sum of active reservations and
    # on-hand unchanged
    counts = Counter(outcomes.values())
    violations = saga_violations(
        outcomes, on_hand={plenty.sku: PLENTY_UNITS, scarce.sku: SCARCE_UNITS}
    )
    assert violations == [], "\n".join(violations[:30])
    scarce_ids = [o.order_id for o in placed if o.request.sku == scarce.sku]
    assert sum(outcomes[i] == "paid" for i in scarce_ids) == min(len(scarce_ids), SCARCE_UNITS)
    charges = FakeGatewayTransaction.objects.filter(kind="charge").count()
    assert charges == Payment.objects.count() == counts["paid"] + counts["declined"]
    assert not FakeGatewayTransaction.objects.filter(kind="refund").exists()
    logs = pipeline.logs()
    assert "dead-lettered" not in logs
    print(
        f"\ncrash: {len(placed)} orders {dict(counts)}; {len(schedule.kills)} SIGKILLs "
        f"{dict(Counter(k.role for k in schedule.kills))}, last at "
        f"{schedule.kills[-1].at:.1f}s; placed in {placing:.1f}s; all settled at "
        f"{settled:.1f}s; {logs.count('duplicate event')} redeliveries skipped; {swept} "
        f"notifications left for the sweep; total {time.monotonic() - started:.1f}s"
    )


# --- 2. broker outage -------------------------------------------------------------------
OUTAGE_SECONDS = 32


def test_frozen_broker_orders_accepted_then_caught_up_without_restarts(pipeline):
    # Given a running pipeline that has taken an order all the way (every client connected)
    broker = _local_service_or_skip("kafka")
    plenty = product_with_stock(on_hand=1000)
    scarce = product_with_stock(on_hand=6)
    customers = [customer_create() for _ in range(8)]
    pipeline.start_saga()
    warmup = order_place_via_api(customers[0], plenty.sku, 1)
    wait_for_status(warmup, "paid", timeout=60)
    processes = [(w.name, w.process.pid) for w in pipeline.children]  # type: ignore[union-attr]

    # When the broker is frozen (SIGSTOP) for 32 s while customers keep ordering
    placed = []
    with service_frozen(broker) as frozen_at:
        while time.monotonic() - frozen_at < OUTAGE_SECONDS:
            sku = scarce.sku if len(placed) % 3 == 0 else plenty.sku
            placed.append(order_post(OrderRequest(customers[len(placed) % 8], sku, 1)))
            time.sleep(0.4)  # pacing the customers, not waiting for Kafka

        # Then the API kept answering 201 (order_post checks) and the outbox holds the events
        during = [o.order_id for o in placed]
        piled = OutboxEvent.objects.filter(
            aggregate_id__in=during, event_type="orders.created", published_at__isnull=True
        ).count()
        assert piled == len(during)
        unpublished = OutboxEvent.objects.filter(published_at__isnull=True).count()
        assert all(w.running for w in pipeline.children), "a worker died during the outage"
    outage = time.monotonic() - frozen_at

    # and once the broker is back the same processes, never restarted, catch up on their own
    allowed = {
        o.order_id: {"paid", "rejected"} if o.request.sku == scarce.sku else {"paid"}
        for o in placed
    }
    allowed[warmup] = {"paid"}
    catch_up = _wait_settled(allowed, timeout=120)
    _wait_all_published()
    outcomes = _outcomes(allowed)
    _wait_notifications_created(outcomes)
    swept = _deliver_notifications(pipeline, allowed)
    assert [(w.name, w.process.pid) for w in pipeline.children] == processes  # type: ignore[union-attr]
    assert all(w.running for w in pipeline.children)
    violations = saga_violations(outcomes, on_hand={plenty.sku: 1000, scarce.sku: 6})
    assert violations == [], "\n".join(violations[:30])
    scarce_ids = [o.order_id for o in placed if o.request.sku == scarce.sku]
    assert sum(outcomes[i] == "paid" for i in scarce_ids) == min(len(scarce_ids), 6)
    assert "dead-lettered" not in pipeline.logs()
    relay = next(w for w in pipeline.children if w.name == "relay")
    print(
        f"\nbroker outage: frozen {outage:.1f}s; {len(placed)} orders placed meanwhile (API "
        f"max {max(o.seconds for o in placed) * 1000:.0f} ms), {unpublished} outbox events "
        f"piled up; all settled {catch_up:.1f}s after the thaw "
        f"{dict(Counter(outcomes.values()))}; {pipeline.logs().count('duplicate event')} "
        f"redeliveries skipped; relay warnings: {len(log_lines(relay.log(), 'warning'))}; "
        f"{swept} notifications left for the sweep"
    )


# --- 3. Redis outage --------------------------------------------------------------------
def _redeliver_and_expect_database_duplicates(pipeline, order_ids: set[str]) -> int:  # type: ignore[no-untyped-def]
    """Deliver again the orders.created and inventory.reserved events of these orders; each
    must be recognised as a duplicate by the database backstop. Returns how many."""
    wanted = {"orders.created": "orders", "inventory.reserved": "inventory"}
    redelivered = []
    for event_type, logical in wanted.items():
        count = OutboxEvent.objects.filter(topic=logical).count()
        for message in topic_read_all(topic_name(logical), expected=count):
            envelope = json.loads(message.value())
            if envelope["event_type"] == event_type and envelope["aggregate_id"] in order_ids:
                message_reproduce(message)
                redelivered.append(envelope["event_id"])
    assert redelivered
    wait_until(
        lambda: all(
            f"duplicate event {event_id} skipped (database)" in pipeline.logs()
            for event_id in redelivered
        ),
        timeout=60,
        interval=0.25,
        message="every redelivered event rejected by the database backstop",
    )
    return len(redelivered)


def _redis_warnings(worker) -> list[str]:  # type: ignore[no-untyped-def]
    return log_lines(worker.log(), "warning", "redis")


def _start_with_unreachable_redis(pipeline) -> dict:  # type: ignore[no-untyped-def]
    """Relay and Celery worker on the real Redis; the saga consumers on a closed port (their
    idempotency keys and their Celery publishing both go there)."""
    closed = f"redis://127.0.0.1:{free_port()}/0"
    pipeline.relay()
    pipeline.celery_worker()
    return {name: pipeline.consumer(name, REDIS_URL=closed) for name in SAGA_CONSUMERS}


def test_redis_unreachable_for_consumers_changes_no_outcome(pipeline):
    # Given saga consumers whose Redis refuses connections
    plenty = product_with_stock(on_hand=100)
    customers = [customer_create() for _ in range(4)]
    consumers = _start_with_unreachable_redis(pipeline)
    pids = {name: w.process.pid for name, w in consumers.items()}  # type: ignore[union-attr]

    # When orders are placed, a quarter of them with a card that is declined
    requests = [
        OrderRequest(customers[i % 4], plenty.sku, 1, "tok_decline" if i % 4 == 3 else "")
        for i in range(12)
    ]
    placed = orders_place_concurrently(requests, workers=4)
    allowed = {o.order_id: {"cancelled"} if o.request.payment_token else {"paid"} for o in placed}

    # Then they reach paid (or cancelled), redeliveries are rejected by the database, the
    # consumers keep running (no restart, no crash loop) and log why Redis is not used
    settled = _wait_settled(allowed, timeout=90)
    redelivered = _redeliver_and_expect_database_duplicates(pipeline, set(allowed))
    assert {n: w.process.pid for n, w in consumers.items() if w.running} == pids  # type: ignore[union-attr]
    for name, worker in consumers.items():
        assert _redis_warnings(worker), f"consumer {name} logged nothing about Redis"
    # and each notification is created exactly once; the sweep delivers them (the consumer
    # that created them could not reach Celery's broker)
    outcomes = _outcomes(allowed)
    created = settled + _wait_notifications_created(outcomes, timeout=90)
    violations = saga_violations(outcomes, on_hand={plenty.sku: 100})
    assert violations == [], "\n".join(violations[:30])
    swept = _deliver_notifications(pipeline, allowed, first_wait=0)
    print(
        f"\nredis unreachable: {len(placed)} orders {dict(Counter(outcomes.values()))} settled "
        f"in {settled:.1f}s, their notifications all created after {created:.1f}s; "
        f"{redelivered} redeliveries rejected by the database; {swept} notifications swept; "
        f"first Redis warning: {_redis_warnings(consumers['orders'])[0][24:160]}"
    )


def test_redis_unreachable_does_not_slow_notifications(pipeline):
    # Given saga consumers whose Redis refuses connections, and 10 orders paid meanwhile
    plenty = product_with_stock(on_hand=100)
    customers = [customer_create() for _ in range(5)]
    _start_with_unreachable_redis(pipeline)
    placed = orders_place_concurrently(
        [OrderRequest(customers[i % 5], plenty.sku, 1) for i in range(10)], workers=5
    )
    allowed = {o.order_id: {"paid"} for o in placed}
    _wait_settled(allowed, timeout=90)

    # Then their 20 notifications exist within seconds of the last payment, as they do
    # with Redis up (Redis is only needed to deliver them, which the sweep does later)
    _wait_notifications_created(_outcomes(allowed), timeout=5)


REDIS_OUTAGE_SECONDS = 20


def test_frozen_redis_orders_still_paid_and_deduplicated(pipeline):
    # Given a running pipeline that has taken an order all the way (every client connected)
    redis_service = _local_service_or_skip("redis")
    plenty = product_with_stock(on_hand=100)
    customers = [customer_create() for _ in range(3)]
    pipeline.start_saga()
    warmup = order_place_via_api(customers[0], plenty.sku, 1)
    wait_for_status(warmup, "paid", timeout=60)
    wait_until(lambda: notifications_unsent([warmup]) == 0, timeout=30)
    processes = [(w.name, w.process.pid) for w in pipeline.children]  # type: ignore[union-attr]

    # When Redis is frozen (SIGSTOP) for 20 s while orders are placed
    with service_frozen(redis_service) as frozen_at:
        placed = orders_place_concurrently(
            [OrderRequest(customers[i % 3], plenty.sku, 1) for i in range(6)], workers=3
        )
        allowed = {o.order_id: {"paid"} for o in placed}

        # Then they are paid during the outage, redeliveries are rejected by the database
        # and every worker keeps running throughout
        paid_after = time.monotonic() - frozen_at + _wait_settled(allowed, timeout=90)
        redelivered = _redeliver_and_expect_database_duplicates(pipeline, set(allowed))
        while time.monotonic() - frozen_at < REDIS_OUTAGE_SECONDS:
            assert all(w.running for w in pipeline.children), "a worker died during the outage"
            time.sleep(0.5)  # holding the outage, checking liveness
        created_during = Notification.objects.filter(order_id__in=list(allowed)).count()
    outage = time.monotonic() - frozen_at

    # and once Redis is back each notification exists exactly once and is sent
    allowed[warmup] = {"paid"}
    outcomes = _outcomes(allowed)
    _wait_notifications_created(outcomes)
    swept = _deliver_notifications(pipeline, allowed)
    violations = saga_violations(outcomes, on_hand={plenty.sku: 100})
    assert violations == [], "\n".join(violations[:30])
    assert [(w.name, w.process.pid) for w in pipeline.children] == processes  # type: ignore[union-attr]
    for worker in pipeline.children:
        if worker.name in {f"consumer-{name}" for name in SAGA_CONSUMERS}:
            assert _redis_warnings(worker), f"{worker.name} logged nothing about Redis"
    print(
        f"\nredis frozen {outage:.1f}s: {len(placed)} orders, all paid {paid_after:.1f}s "
        f"into it; {redelivered} redeliveries rejected by the database; "
        f"{created_during} of {2 * len(placed)} notifications created during it; {swept} "
        f"left for the sweep; API max {max(o.seconds for o in placed) * 1000:.0f} ms"
    )


# --- 4. oversell ------------------------------------------------------------------------
def test_two_inventory_consumers_and_a_restock_never_oversell(pipeline):
    # Given 50 units, two processes of the inventory consumer group and 200 customers
    product = product_with_stock(on_hand=50)
    customers = [customer_create() for _ in range(200)]
    first = pipeline.consumer("inventory")
    second = pipeline.consumer("inventory")
    pipeline.consumer("orders")
    pipeline.relay()
    wait_until(lambda: "assigned" in first.log() and "assigned" in second.log(), timeout=30)

    # When each orders one unit, concurrently, and 20 more units arrive mid-flow
    sampler = StockSampler(product.pk).start()
    restock: dict[str, int] = {}

    def restock_mid_flow() -> None:
        try:
            wait_until(lambda: StockLevel.objects.get(product=product).reserved >= 10, timeout=60)
            stock_restock(product=product, quantity=20)
            restock["decided"] = OutboxEvent.objects.filter(
                event_type__in=["inventory.reserved", "inventory.failed"]
            ).count()
        finally:
            connection.close()

    restocker = threading.Thread(target=restock_mid_flow)
    restocker.start()
    placed = orders_place_concurrently(
        [OrderRequest(customer, product.sku, 1) for customer in customers], workers=8
    )
    restocker.join(60)
    allowed = {o.order_id: {"paid", "rejected"} for o in placed}
    settled = _wait_settled(allowed, timeout=120)
    samples = sampler.stop()

    # Then reserved never exceeded on-hand at any sampled moment, nor can it in the database
    assert len(samples) > 100
    assert all(0 <= reserved <= on_hand for on_hand, reserved in samples)
    with pytest.raises(IntegrityError), transaction.atomic():
        StockLevel.objects.filter(product=product).update(reserved=F("on_hand") + 1)
    # and the 70 units went to exactly 70 orders (the restock landed while at least 20 were
    # still undecided), each charged once; the other 130 were rejected
    assert "decided" in restock, "the restock never ran"
    assert 200 - restock["decided"] >= 20, f"restock too late: {restock}"
    counts = status_counts(allowed)
    stock = StockLevel.objects.get(product=product)
    active = Reservation.objects.filter(product=product, status="active")
    assert counts["paid"] == stock.reserved == active.aggregate(n=Sum("quantity"))["n"] == 70
    assert counts["rejected"] == 200 - counts["paid"]
    assert stock.on_hand == 70
    assert Payment.objects.filter(status="captured").count() == 70
    assert FakeGatewayTransaction.objects.filter(kind="charge").count() == 70
    for worker in (first, second):
        assert worker.terminate() == 0
    handled = [
        log_lines(w.log(), "stopped: processed=")[-1].split("processed=")[1].split()[0]
        for w in (first, second)
    ]
    assert all(int(n) > 0 for n in handled), f"one inventory process did nothing: {handled}"
    print(
        f"\noversell: {dict(counts)} settled in {settled:.1f}s; {len(samples)} stock samples, "
        f"reserved at most {max(r for _, r in samples)}; restock when {restock['decided']} "
        f"of 200 decided; inventory processes: {handled}"
    )
