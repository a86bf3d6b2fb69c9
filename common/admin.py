"""How the admin looks, and the helpers every app's admin uses."""

import re
import uuid
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

# The app list beside every page takes a fifth of a 1400 px window from the lists and their
# filters; the home page and the breadcrumbs lead to every model all the same.
admin.site.enable_nav_sidebar = False


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
