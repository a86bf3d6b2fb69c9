"""Webhooks admin (staff only): endpoints (register, with the secret shown once; re-enable;
redeliver what failed), deliveries (redeliver) and every attempt with its status code,
latency and error. Nothing else is edited by hand: services move every row."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from common.admin import ExactUUIDSearchMixin, ReadOnlyAdminMixin, short_id, wrappable
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.payloads import ALL_EVENTS, SUBSCRIBABLE_EVENT_TYPES
from webhooks.selectors import webhook_attempts_of
from webhooks.services import (
    webhook_deliveries_redeliver,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoints_enable,
    webhook_endpoints_redeliver_failed,
)


class EndpointAddForm(forms.ModelForm):
    """Registration: the URL and the events; the secret is made by the service."""

    event_types = forms.MultipleChoiceField(
        choices=[(ALL_EVENTS, "every order event (*)")]
        + [(name, name) for name in SUBSCRIBABLE_EVENT_TYPES],
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("url",)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "url" in data and "event_types" in data:
            from webhooks.services import webhook_event_types_normalise, webhook_url_check

            try:
                webhook_url_check(url=data["url"])
                data["event_types"] = webhook_event_types_normalise(data["event_types"])
            except ValidationError as exc:
                for name, errors in exc.message_dict.items():
                    self.add_error(name, errors)
        return data


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ExactUUIDSearchMixin, admin.ModelAdmin):
    list_display = (
        "endpoint",
        "url_text",
        "events",
        "status",
        "consecutive_failures",
        "disabled_at",
        "created_at",
    )
    list_filter = ("status", "created_at")
    search_fields = ("url",)
    uuid_search_fields = ("pk",)
    search_help_text = "A full endpoint id, or part of the URL."
    actions = ("enable", "redeliver_failed")
    # The secret is never shown here: it is in the registration's answer only.
    readonly_fields = (
        "id",
        "url",
        "event_types",
        "status",
        "disabled_reason",
        "disabled_at",
        "consecutive_failures",
        "failing_since",
        "created_by",
        "created_at",
        "updated_at",
        "recent_deliveries",
    )

    def get_form(
        self,
        request: HttpRequest,
        obj: WebhookEndpoint | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> type[ModelForm]:
        if obj is None:
            kwargs["form"] = EndpointAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> list[str]:
        if obj is None:
            return ["url", "event_types"]
        return list(self.readonly_fields)

    def get_readonly_fields(
        self, request: HttpRequest, obj: WebhookEndpoint | None = None
    ) -> tuple[str, ...]:
        return () if obj is None else self.readonly_fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # view, add, delete and the actions: nothing is edited by hand

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.is_staff and request.user.has_perm("webhooks.view_webhookendpoint")

    def save_model(
        self, request: HttpRequest, obj: WebhookEndpoint, form: ModelForm, change: bool
    ) -> None:
        if change:
            return
        created = webhook_endpoint_create(
            url=form.cleaned_data["url"],
            event_types=form.cleaned_data["event_types"],
            created_by=request.user,
        )
        obj.__dict__.update(created.__dict__)  # the admin goes on with the saved row
        messages.warning(
            request,
            format_html(
                "The signing secret of {} is <code>{}</code>. Copy it now: it is not shown again.",
                created.url,
                created.secret,
            ),
        )

    def delete_model(self, request: HttpRequest, obj: WebhookEndpoint) -> None:
        webhook_endpoint_delete(endpoint_id=obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint_id in queryset.values_list("id", flat=True):
            webhook_endpoint_delete(endpoint_id=endpoint_id)

    @admin.display(description="endpoint", ordering="id")
    def endpoint(self, endpoint: WebhookEndpoint) -> SafeString:
        return short_id(endpoint.id)

    @admin.display(description="URL", ordering="url")
    def url_text(self, endpoint: WebhookEndpoint) -> SafeString:
        return wrappable(endpoint.url)

    @admin.display(description="events")
    def events(self, endpoint: WebhookEndpoint) -> str:
        return ", ".join(endpoint.event_types)

    @admin.display(description="latest deliveries")
    def recent_deliveries(self, endpoint: WebhookEndpoint) -> SafeString:
        link = reverse("admin:webhooks_webhookdelivery_changelist")
        return format_html(
            '<a href="{}?endpoint__id__exact={}">all deliveries</a>', link, endpoint.pk
        )

    @admin.action(description="Re-enable selected endpoints", permissions=["operate"])
    def enable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        enabled = webhook_endpoints_enable(endpoint_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"Re-enabled {enabled} endpoint(s).", messages.SUCCESS)

    @admin.action(
        description="Redeliver the failed deliveries of selected endpoints", permissions=["operate"]
    )
    def redeliver_failed(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        queued = webhook_endpoints_redeliver_failed(
            endpoint_ids=list(queryset.values_list("id", flat=True))
        )
        self.message_user(request, f"Queued {queued} delivery(ies) again.", messages.SUCCESS)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, ExactUUIDSearchMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "event_type",
        "order",
        "endpoint_link",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
        "delivered_at",
    )
    list_filter = ("status", "event_type", "endpoint", "created_at")
    list_select_related = ("endpoint",)
    uuid_search_fields = ("order_id", "event_id")
    search_help_text = "A full order id or event id."
    ordering = ("-id",)
    show_full_result_count = False
    actions = ("redeliver",)
    fieldsets = (
        (None, {"fields": ("endpoint", "event_type", "order_id", "event_id", "message_id")}),
        (
            "Delivery",
            {
                "fields": (
                    "status",
                    "attempts",
                    "next_attempt_at",
                    "last_status_code",
                    "last_error",
                    "created_at",
                    "delivered_at",
                )
            },
        ),
        ("Attempts", {"fields": ("attempt_table",)}),
        ("Body", {"fields": ("body_pretty",)}),
    )
    readonly_fields = ("attempt_table", "body_pretty")

    @admin.display(description="order", ordering="order_id")
    def order(self, delivery: WebhookDelivery) -> SafeString:
        return short_id(delivery.order_id)

    @admin.display(description="endpoint", ordering="endpoint__url")
    def endpoint_link(self, delivery: WebhookDelivery) -> SafeString:
        return wrappable(delivery.endpoint.url)

    @admin.display(description="attempts, oldest first")
    def attempt_table(self, delivery: WebhookDelivery) -> SafeString:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0f}</td><td>{}</td></tr>",
            (
                (
                    attempt.number,
                    f"{attempt.started_at:%Y-%m-%d %H:%M:%S}",
                    attempt.outcome,
                    attempt.status_code or "—",
                    attempt.duration_ms,
                    attempt.error,
                )
                for attempt in webhook_attempts_of(delivery_id=delivery.id)
            ),
        )
        return format_html(
            "<table><tr><th>#</th><th>started</th><th>outcome</th><th>status</th>"
            "<th>ms</th><th>error</th></tr>{}</table>",
            rows,
        )

    @admin.display(description="body")
    def body_pretty(self, delivery: WebhookDelivery) -> SafeString:
        return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', delivery.body)

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return request.user.is_staff and request.user.has_perm("webhooks.view_webhookdelivery")

    @admin.action(description="Redeliver selected deliveries", permissions=["redeliver"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        queued = webhook_deliveries_redeliver(
            delivery_ids=list(queryset.values_list("id", flat=True))
        )
        skipped = queryset.count() - queued
        self.message_user(
            request,
            f"Queued {queued} delivery(ies) again; {skipped} still pending, left alone.",
            messages.SUCCESS,
        )


@admin.register(WebhookAttempt)
class WebhookAttemptAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "started_at",
        "delivery_link",
        "number",
        "outcome",
        "status_code",
        "latency_ms",
        "error",
    )
    list_filter = ("outcome", "status_code", "started_at")
    list_select_related = ("delivery",)
    search_fields = ("error",)
    date_hierarchy = "started_at"
    ordering = ("-id",)
    show_full_result_count = False

    @admin.display(description="delivery", ordering="delivery_id")
    def delivery_link(self, attempt: WebhookAttempt) -> SafeString:
        page = reverse("admin:webhooks_webhookdelivery_change", args=[attempt.delivery_id])
        return format_html(
            '<a href="{}">{} of {}</a>',
            page,
            attempt.delivery.event_type,
            str(attempt.delivery.order_id)[:8],
        )

    @admin.display(description="latency (ms)", ordering="duration_ms")
    def latency_ms(self, attempt: WebhookAttempt) -> str:
        return f"{attempt.duration_ms:.0f}"
