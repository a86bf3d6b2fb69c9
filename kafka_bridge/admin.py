"""Read-only admin for the outbox and the consumers' processed-event log.

Nothing here writes: outbox rows are written by services and published by the relay,
processed-event rows are written by consumers. RelayLock is internal and not registered.

The two mixins below are shared by the other apps' admins (kafka_bridge is the app every
other app already depends on).
"""

import contextlib
import json
import re
import uuid
from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator
from django.utils.timesince import timesince

from kafka_bridge.dead_letters import (
    DeadLetterNotReplayable,
    dead_letter_discard,
    dead_letter_replay,
)
from kafka_bridge.models import DeadLetter, OutboxEvent, ProcessedEvent

ERROR_MESSAGE_LIST_CHARS = 160


class ReadOnlyAdminMixin:
    """View-only admin: rows are written by services and consumers, never by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        return None


class ExactUUIDSearchMixin:
    """A pasted UUID finds rows by an exact (indexed) match on `uuid_search_fields`, in
    addition to whatever the ordinary `search_fields` match."""

    uuid_search_fields: tuple[str, ...] = ()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        results, may_have_duplicates = super().get_search_results(  # type: ignore[misc]
            request, queryset, search_term
        )
        value = _parse_uuid(search_term) if search_term else None
        if value is None or not self.uuid_search_fields:
            return results, may_have_duplicates
        exact = queryset.filter(
            Q.create([(field, value) for field in self.uuid_search_fields], connector=Q.OR)
        )
        if not self.get_search_fields(request):  # type: ignore[attr-defined]
            return exact, may_have_duplicates
        return results | exact, may_have_duplicates


def wrappable(text: str) -> SafeString:
    """`text` that may wrap after each dot or @ when its list column is narrow (a dotted
    class name, an e-mail address) instead of widening the list beyond the window."""
    parts = re.split(r"(?<=[.@])", text)
    return format_html_join(mark_safe("<wbr>"), "{}", ((part,) for part in parts))


def short_id(value: uuid.UUID, href: str = "") -> SafeString:
    """An id for a list column: its first block, which tells rows apart on a page, with the
    full id as the title (a full UUID wraps over several lines in a column); a link to
    `href` if given."""
    if href:
        return format_html('<a href="{}" title="{}">{}</a>', href, value, str(value)[:8])
    return format_html('<span title="{}">{}</span>', value, str(value)[:8])


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
