"""The risk rules: small plain functions, each looking at one order and what came before it,
each giving points and the reason for them. Their sum is the order's score; the thresholds
(`RiskSettings.review_score`, `block_score`) turn the score into a decision.

Rules know nothing of the database: `risk.services` gathers the facts (the orders'
`orders.selectors.OrderRiskFacts`) and the history (`History`) of a whole batch in a
constant number of queries and calls `assess` per order. docs/risk.md lists the rules,
their settings and how to tune them.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from orders.selectors import OrderRiskFacts
from risk.review import Decision


@dataclass(frozen=True)
class RiskSettings:
    """The settings the rules read (settings.RISK), read once per batch."""

    review_score: int = 50
    block_score: int = 100
    customer_window: timedelta = timedelta(hours=1)
    customer_max_orders: int = 5
    customer_velocity_points: int = 60
    token_window: timedelta = timedelta(hours=1)
    token_max_orders: int = 5
    token_velocity_points: int = 60
    failed_payments_window: timedelta = timedelta(days=1)
    failed_payments_max: int = 2
    failed_payments_points: int = 40
    amount_factor: Decimal = Decimal(5)
    amount_min_history: int = 3
    amount_points: int = 50
    history_orders: int = 50
    new_country_points: int = 25
    first_order_amount: Decimal = Decimal(500)
    first_order_points: int = 50

    @classmethod
    def from_settings(cls, risk: Mapping[str, Any]) -> RiskSettings:
        return cls(
            review_score=risk["REVIEW_SCORE"],
            block_score=risk["BLOCK_SCORE"],
            customer_window=timedelta(seconds=risk["CUSTOMER_WINDOW_SECONDS"]),
            customer_max_orders=risk["CUSTOMER_MAX_ORDERS"],
            customer_velocity_points=risk["CUSTOMER_VELOCITY_POINTS"],
            token_window=timedelta(seconds=risk["TOKEN_WINDOW_SECONDS"]),
            token_max_orders=risk["TOKEN_MAX_ORDERS"],
            token_velocity_points=risk["TOKEN_VELOCITY_POINTS"],
            failed_payments_window=timedelta(seconds=risk["FAILED_PAYMENTS_WINDOW_SECONDS"]),
            failed_payments_max=risk["FAILED_PAYMENTS_MAX"],
            failed_payments_points=risk["FAILED_PAYMENTS_POINTS"],
            amount_factor=Decimal(str(risk["AMOUNT_FACTOR"])),
            amount_min_history=risk["AMOUNT_MIN_HISTORY"],
            amount_points=risk["AMOUNT_POINTS"],
            history_orders=risk["HISTORY_ORDERS"],
            new_country_points=risk["NEW_COUNTRY_POINTS"],
            first_order_amount=Decimal(risk["FIRST_ORDER_AMOUNT"]),
            first_order_points=risk["FIRST_ORDER_POINTS"],
        )


@dataclass(frozen=True)
class History:
    """What came before the order, as of its creation (the counts include the order)."""

    # Orders of this customer placed within the customer window.
    customer_orders: int = 1
    # Orders with this payment token within the token window, whoever placed them (0: the
    # order has no token).
    token_orders: int = 0
    # Declined charges within the failed-payments window: the customer's, the token's.
    customer_failed_payments: int = 0
    token_failed_payments: int = 0
    # Totals of the customer's earlier paid orders (the latest `history_orders` of them),
    # and the countries they were shipped to.
    paid_totals: tuple[Decimal, ...] = ()
    paid_countries: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Points:
    points: int
    reason: str = ""


NONE = Points(0)
Rule = Callable[[OrderRiskFacts, History, RiskSettings], Points]


def _minutes(window: timedelta) -> str:
    minutes = window.total_seconds() / 60
    return f"{minutes:g} min" if minutes < 120 else f"{minutes / 60:g} h"


def customer_velocity(order: OrderRiskFacts, history: History, config: RiskSettings) -> Points:
    """Many orders from one customer in a short time (a script, a stolen account)."""
    if history.customer_orders <= config.customer_max_orders:
        return NONE
    return Points(
        config.customer_velocity_points,
        f"{history.customer_orders} orders by this customer in {_minutes(config.customer_window)}"
        f" (more than {config.customer_max_orders})",
    )


def token_velocity(order: OrderRiskFacts, history: History, config: RiskSettings) -> Points:
    """Many orders paid with one token, by any customers (card testing, a shared card)."""
    if not order.payment_token or history.token_orders <= config.token_max_orders:
        return NONE
    return Points(
        config.token_velocity_points,
        f"{history.token_orders} orders with this payment token in "
        f"{_minutes(config.token_window)} (more than {config.token_max_orders})",
    )


def failed_payments(order: OrderRiskFacts, history: History, config: RiskSettings) -> Points:
    """Many declined charges lately, of the customer or of the payment token (counted once:
    the larger of the two)."""
    by_customer, by_token = history.customer_failed_payments, history.token_failed_payments
    if max(by_customer, by_token) <= config.failed_payments_max:
        return NONE
    whose = "the customer" if by_customer >= by_token else "this payment token"
    return Points(
        config.failed_payments_points,
        f"{max(by_customer, by_token)} declined payments of {whose} in "
        f"{_minutes(config.failed_payments_window)} (more than {config.failed_payments_max})",
    )


def amount_spike(order: OrderRiskFacts, history: History, config: RiskSettings) -> Points:
    """A total far above what this customer usually pays (with enough history to know)."""
    if len(history.paid_totals) < max(config.amount_min_history, 1):
        return NONE
    median = Decimal(statistics.median(history.paid_totals))
    if order.total <= config.amount_factor * median:
        return NONE
    ratio = order.total / median if median else Decimal("Infinity")
    return Points(
        config.amount_points,
        f"total {order.total} is {ratio:.1f}x the median ({median:.2f}) of "
        f"{len(history.paid_totals)} earlier paid orders (more than {config.amount_factor}x)",
    )


def new_country(order: OrderRiskFacts, history: History, config: RiskSettings) -> Points:
    """Shipped to a country none of the customer's paid orders went to."""
    if not order.country or not history.paid_countries or order.country in history.paid_countries:
        return NONE
    known = ", ".join(sorted(history.paid_countries))
    return Points(
        config.new_country_points,
        f"ships to {order.country}; earlier paid orders went to {known}",
    )


def first_order_high_amount(
    order: OrderRiskFacts, history: History, config: RiskSettings
) -> Points:
    """A customer's first order, and a large one."""
    if history.paid_totals or order.total < config.first_order_amount:
        return NONE
    return Points(
        config.first_order_points,
        f"first order, total {order.total} (at least {config.first_order_amount})",
    )


# Every rule, by the name events, the admin and the docs use for it.
RULES: dict[str, Rule] = {
    "customer_velocity": customer_velocity,
    "token_velocity": token_velocity,
    "failed_payments": failed_payments,
    "amount_spike": amount_spike,
    "new_country": new_country,
    "first_order_high_amount": first_order_high_amount,
}


@dataclass(frozen=True)
class RuleScore:
    rule: str
    points: int
    reason: str = ""


@dataclass(frozen=True)
class Assessment:
    score: int
    decision: Decision
    rules: tuple[RuleScore, ...]  # every rule, in RULES order, those that gave 0 too

    @property
    def reasons(self) -> list[str]:
        """The reasons of the rules that gave points, most points first."""
        scored = sorted((r for r in self.rules if r.points), key=lambda r: -r.points)
        return [r.reason for r in scored]


def decision_for(score: int, config: RiskSettings) -> Decision:
    if score >= config.block_score:
        return Decision.BLOCK
    if score >= config.review_score:
        return Decision.HOLD
    return Decision.APPROVE


def assess(order: OrderRiskFacts, history: History, config: RiskSettings) -> Assessment:
    """Run every rule on the order; the score is the sum of their points."""
    rules = []
    for name, rule in RULES.items():
        result = rule(order, history, config)
        rules.append(RuleScore(name, result.points, result.reason))
    score = sum(r.points for r in rules)
    return Assessment(score=score, decision=decision_for(score, config), rules=tuple(rules))
