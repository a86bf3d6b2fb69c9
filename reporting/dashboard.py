"""The admin's pipeline dashboard: one staff page with what an operator looks at first.

Server-rendered: figures from the selectors, the per-minute chart as inline SVG drawn here
(no script, nothing from a CDN). The broker is asked for lag with a short timeout; when it
does not answer, the page says so and shows everything else; so does Redis for the payment
circuit breaker's state."""

from dataclasses import dataclass

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from kafka_bridge.selectors import (
    consumer_lag_by_group,
    dead_letters_by_topic,
    dead_letters_recent,
    outbox_backlog,
)
from orders.selectors import orders_count_by_status, payment_circuit
from reporting.selectors import MinuteCounts, pipeline_minutes
from risk.selectors import risk_decisions_count

CHART_WIDTH, CHART_HEIGHT = 1200, 200
CHART_LEFT, CHART_RIGHT, CHART_BOTTOM = 48, 24, 24  # room for the axis labels


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    y: float
    height: float
    value: int
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    plot_left: int
    plot_bottom: float
    peak: int
    events: list[Bar]
    orders: list[Bar]
    ticks: list[tuple[float, str]]  # (x, "HH:MM")


def minutes_chart(minutes: list[MinuteCounts]) -> Chart:
    """Bars of events (wide) and orders (narrow, in front) per minute, on one scale."""
    peak = max([1, *(m.events for m in minutes), *(m.orders for m in minutes)])
    plot_width = CHART_WIDTH - CHART_LEFT - CHART_RIGHT
    plot_height = CHART_HEIGHT - CHART_BOTTOM - 8
    step = plot_width / max(len(minutes), 1)
    bottom = CHART_HEIGHT - CHART_BOTTOM

    def bar(index: int, value: int, width: float, label: str, at: str) -> Bar:
        height = plot_height * value / peak
        x = CHART_LEFT + index * step + (step - width) / 2
        return Bar(x, width, bottom - height, height, value, f"{at} UTC: {value} {label}")

    events, orders, ticks = [], [], []
    for index, minute in enumerate(minutes):
        at = minute.minute.strftime("%H:%M")
        events.append(bar(index, minute.events, step * 0.8, "events", at))
        orders.append(bar(index, minute.orders, step * 0.4, "orders", at))
        if index % 10 == 0 or index == len(minutes) - 1:
            ticks.append((CHART_LEFT + index * step + step / 2, at))
    return Chart(CHART_WIDTH, CHART_HEIGHT, CHART_LEFT, bottom, peak, events, orders, ticks)


def pipeline_dashboard(request: HttpRequest) -> HttpResponse:
    minutes = pipeline_minutes()
    dead_letters = reverse("admin:kafka_bridge_deadletter_changelist")
    by_topic = [
        {**row, "url": f"{dead_letters}?{urlencode({'original_topic': row['original_topic']})}"}
        for row in dead_letters_by_topic()
    ]
    context = {
        **admin.site.each_context(request),
        "title": "Pipeline",
        "statuses": orders_count_by_status(),
        "chart": minutes_chart(minutes),
        "orders_last_hour": sum(m.orders for m in minutes),
        "events_last_hour": sum(m.events for m in minutes),
        "lag": consumer_lag_by_group(),
        "backlog": outbox_backlog(),
        "dead_letters_by_topic": by_topic,
        "dead_letters_url": dead_letters,
        "recent_failures": dead_letters_recent(limit=10),
        "payment_circuit": payment_circuit(now=timezone.now()),
        "risk_decisions": risk_decisions_count(),
        "risk_url": reverse("admin:risk_riskassessment_changelist"),
    }
    return render(request, "reporting/admin/pipeline_dashboard.html", context)
