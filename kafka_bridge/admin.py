"""Read-only admin for the outbox and the consumers' processed-event log.

Nothing here writes: outbox rows are written by services and published by the relay,
processed-event rows are written by consumers.
"""

import contextlib
import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.timesince import timesince

from common.admin import ExactUUIDSearchMixin, ReadOnlyAdminMixin, wrappable
from kafka_bridge.dead_letters import (
    DeadLetterNotReplayable,
    dead_letter_discard,
    dead_letter_replay,
)
from kafka_bridge.models import DeadLetter, OutboxEvent, ProcessedEvent

ERROR_MESSAGE_LIST_CHARS = 160


class PublishedFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "published"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("published", "Published"), ("pending", "Pending")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> QuerySet:
        if self.value() == "published":
            return queryset.filter(published_at__isnull=False)
        if self.value() == "pending":
            return queryset.filter(published_at__isnull=True)
        return queryset


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdminMixin, ExactUUIDSearchMixin, admin.ModelAdmin):
    list_display = (
        "event_type",
        "aggregate_id",
        "key",
        "status",
        "age",
        "attempts",
        "created_at",
        "published_at",
    )
    list_filter = (PublishedFilter, "event_type")
    search_fields = ("aggregate_id__exact", "correlation_id__exact")
    uuid_search_fields = ("event_id",)
    search_help_text = "An exact event id, aggregate id (e.g. an order id) or correlation id."
    ordering = ("-id",)
    # The outbox is an ever-growing audit log: skip the unfiltered COUNT(*).
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("event_id", "event_type", "schema_version", "topic", "key")}),
        ("Tracing", {"fields": ("aggregate_id", "correlation_id")}),
        (
            "Delivery",
            {"fields": ("status", "attempts", "last_error", "created_at", "published_at", "age")},
        ),
        ("Envelope", {"fields": ("envelope_pretty",)}),
    )
    readonly_fields = ("status", "age", "envelope_pretty")

    @admin.display(description="status", ordering="published_at")
    def status(self, obj: OutboxEvent) -> str:
        return "published" if obj.is_published else "pending"

    @admin.display(description="age", ordering="-created_at")
    def age(self, obj: OutboxEvent) -> str:
        return timesince(obj.created_at, timezone.now())

    @admin.display(description="envelope")
    def envelope_pretty(self, obj: OutboxEvent) -> SafeString:
        return format_html(
            '<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
            json.dumps(obj.envelope, indent=2, ensure_ascii=False),
        )


@admin.register(ProcessedEvent)
class ProcessedEventAdmin(ReadOnlyAdminMixin, ExactUUIDSearchMixin, admin.ModelAdmin):
    list_display = ("consumer_group", "event_id", "event_type", "processed_at")
    list_filter = ("consumer_group", "event_type")
    search_fields = ("consumer_group",)
    uuid_search_fields = ("event_id",)
    search_help_text = "An exact event id, or part of a consumer group name."
    date_hierarchy = "processed_at"
    ordering = ("-processed_at",)
    show_full_result_count = False


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdminMixin, ExactUUIDSearchMixin, admin.ModelAdmin):
    """Messages a consumer gave up on. Fix the cause, then replay (same event id, through
    the outbox) or discard; the same as `manage.py replay_dead_letters`."""

    list_display = (
        "failed_at",
        "original_topic",
        "event_type",
        "consumer_group",
        "error_class_name",
        "error",
        "attempts",
        "status",
    )
    list_filter = ("status", "original_topic", "consumer_group", "error_class", "failed_at")
    date_hierarchy = "failed_at"
    search_fields = ("error_message",)
    uuid_search_fields = ("event_id",)
    search_help_text = "An exact event id, or words from the error message."
    actions = ("replay", "discard")
    fieldsets = (
        (None, {"fields": ("status", "resolved_at", "resolved_by")}),
        ("Failure", {"fields": ("consumer_group", "error_class", "error_message", "attempts")}),
        (
            "Origin",
            {"fields": ("original_topic", "original_partition", "original_offset", "failed_at")},
        ),
        ("Message", {"fields": ("event_type", "event_id", "key", "payload_pretty", "headers")}),
    )
    readonly_fields = ("payload_pretty",)

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser or request.user.has_perm("kafka_bridge.view_deadletter")

    @admin.display(description="error class", ordering="error_class")
    def error_class_name(self, obj: DeadLetter) -> SafeString:
        return wrappable(obj.error_class)  # whole, on two lines if the column is narrow

    @admin.display(description="error message")
    def error(self, obj: DeadLetter) -> str:
        # Enough to tell failures apart in the list; the whole message is on the page.
        return Truncator(obj.error_message).chars(ERROR_MESSAGE_LIST_CHARS)

    @admin.display(description="payload")
    def payload_pretty(self, obj: DeadLetter) -> SafeString:
        text = obj.value_text
        with contextlib.suppress(ValueError):  # not JSON: shown as received (often the reason)
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)

    @admin.action(
        description="Replay selected (same event id, via the outbox)", permissions=["resolve"]
    )
    def replay(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        replayed, refused = 0, []
        for dead_letter in queryset.order_by("failed_at", "id"):
            try:
                dead_letter_replay(dead_letter_id=dead_letter.id, actor=request.user.get_username())
                replayed += 1
            except DeadLetterNotReplayable as exc:
                refused.append(f"#{dead_letter.id}: {exc}")
        self.message_user(request, f"Replayed {replayed} dead letter(s).", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, f"Not replayed {reason}", messages.WARNING)

    @admin.action(description="Discard selected", permissions=["resolve"])
    def discard(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        for dead_letter in queryset:
            dead_letter_discard(dead_letter_id=dead_letter.id, actor=request.user.get_username())
        self.message_user(
            request, f"Discarded {queryset.count()} dead letter(s).", messages.SUCCESS
        )
