"""Each risk rule on its own, and how the points add up to a decision: plain functions, no
database."""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from orders.selectors import OrderRiskFacts
from risk.review import Decision
from risk.rules import (
    RULES,
    History,
    RiskSettings,
    amount_spike,
    assess,
    customer_velocity,
    decision_for,
    failed_payments,
    first_order_high_amount,
    new_country,
    token_velocity,
)

CONFIG = RiskSettings()  # the documented defaults (settings.RISK)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _order(total: str = "20.00", *, token: str = "", country: str = "") -> OrderRiskFacts:
    return OrderRiskFacts(
        order_id=uuid.uuid4(),
        customer_id=7,
        total=Decimal(total),
        created_at=NOW,
        payment_token=token,
        country=country,
    )


def _paid(*totals: str) -> tuple[Decimal, ...]:
    return tuple(Decimal(t) for t in totals)


def test_the_defaults_are_those_of_the_settings(settings):
    assert RiskSettings.from_settings(settings.RISK) == CONFIG


# --- customer velocity -----------------------------------------------------------------------
def test_customer_velocity_allows_up_to_the_limit():
    assert customer_velocity(_order(), History(customer_orders=5), CONFIG).points == 0


def test_customer_velocity_scores_the_order_beyond_the_limit():
    result = customer_velocity(_order(), History(customer_orders=6), CONFIG)
    assert result.points == 60
    assert result.reason == "6 orders by this customer in 60 min (more than 5)"


# --- token velocity --------------------------------------------------------------------------
def test_token_velocity_scores_many_orders_with_one_token():
    result = token_velocity(_order(token="tok_x"), History(token_orders=6), CONFIG)
    assert result.points == 60
    assert result.reason == "6 orders with this payment token in 60 min (more than 5)"


def test_token_velocity_allows_up_to_the_limit_and_ignores_orders_without_a_token():
    assert token_velocity(_order(token="tok_x"), History(token_orders=5), CONFIG).points == 0
    assert token_velocity(_order(token=""), History(token_orders=50), CONFIG).points == 0


# --- failed payments -------------------------------------------------------------------------
def test_failed_payments_of_the_customer_score_beyond_the_limit():
    assert failed_payments(_order(), History(customer_failed_payments=2), CONFIG).points == 0
    result = failed_payments(_order(), History(customer_failed_payments=3), CONFIG)
    assert result.points == 40
    assert result.reason == "3 declined payments of the customer in 24 h (more than 2)"


def test_failed_payments_of_the_token_score_once_even_with_the_customers_too():
    history = History(customer_failed_payments=3, token_failed_payments=5)
    result = failed_payments(_order(token="tok_x"), history, CONFIG)
    assert result.points == 40  # not 80: one rule, the larger count
    assert "5 declined payments of this payment token" in result.reason


# --- amount far above the usual ---------------------------------------------------------------
def test_amount_spike_scores_more_than_five_times_the_median():
    history = History(paid_totals=_paid("20", "30", "20", "100"))  # median 25
    assert amount_spike(_order("125.00"), history, CONFIG).points == 0  # exactly 5x
    result = amount_spike(_order("125.01"), history, CONFIG)
    assert result.points == 50
    assert result.reason.startswith("total 125.01 is 5.0x the median (25.00) of 4 earlier")


def test_amount_spike_needs_a_minimum_history():
    history = History(paid_totals=_paid("10", "10"))
    assert amount_spike(_order("1000.00"), history, CONFIG).points == 0


# --- new shipping country ---------------------------------------------------------------------
def test_new_country_scores_a_country_no_paid_order_went_to():
    history = History(paid_totals=_paid("10"), paid_countries=frozenset({"DE", "AT"}))
    result = new_country(_order(country="FR"), history, CONFIG)
    assert (result.points, result.reason) == (25, "ships to FR; earlier paid orders went to AT, DE")
    assert new_country(_order(country="DE"), history, CONFIG).points == 0


def test_new_country_needs_a_country_on_both_sides():
    known = History(paid_totals=_paid("10"), paid_countries=frozenset({"DE"}))
    assert new_country(_order(country=""), known, CONFIG).points == 0  # ships nowhere
    assert new_country(_order(country="FR"), History(), CONFIG).points == 0  # no history


# --- first order, large ----------------------------------------------------------------------
def test_first_order_scores_from_the_amount_on():
    assert first_order_high_amount(_order("499.99"), History(), CONFIG).points == 0
    result = first_order_high_amount(_order("500.00"), History(), CONFIG)
    assert (result.points, result.reason) == (50, "first order, total 500.00 (at least 500)")


def test_a_customer_with_a_paid_order_is_no_first_timer():
    history = History(paid_totals=_paid("10"))
    assert first_order_high_amount(_order("900.00"), history, CONFIG).points == 0


# --- the sum and the decision ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("score", "decision"),
    [
        (0, Decision.APPROVE),
        (49, Decision.APPROVE),
        (50, Decision.HOLD),
        (99, Decision.HOLD),
        (100, Decision.BLOCK),
    ],
)
def test_thresholds_decide(score, decision):
    assert decision_for(score, CONFIG) == decision


def test_a_normal_order_scores_nothing_and_is_approved():
    result = assess(_order(country="DE"), History(paid_totals=_paid("20")), CONFIG)
    assert (result.score, result.decision, result.reasons) == (0, Decision.APPROVE, [])
    assert [r.rule for r in result.rules] == list(RULES)  # every rule reports, zeros too


def test_points_add_up_and_reasons_come_most_points_first():
    history = History(
        customer_orders=9,
        customer_failed_payments=3,
        paid_totals=_paid("10", "10", "10"),
        paid_countries=frozenset({"DE"}),
    )
    result = assess(_order("70.00", country="FR"), history, CONFIG)
    points = {r.rule: r.points for r in result.rules if r.points}
    assert points == {
        "customer_velocity": 60,
        "failed_payments": 40,
        "amount_spike": 50,
        "new_country": 25,
    }
    assert result.score == 175
    assert result.decision == Decision.BLOCK
    assert result.reasons[0].startswith("9 orders by this customer")
    assert result.reasons[-1].startswith("ships to FR")


def test_settings_move_the_thresholds_and_the_points():
    strict = RiskSettings(customer_max_orders=2, customer_window=timedelta(minutes=5))
    result = customer_velocity(_order(), History(customer_orders=3), strict)
    assert result.reason == "3 orders by this customer in 5 min (more than 2)"
