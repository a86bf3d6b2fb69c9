"""DRF's page-number pagination, without the COUNT query when the page says the count.

Django's Paginator counts the rows (`SELECT COUNT(*)`) before it reads a page. When the page
turns out not to be full, the count is known without it: the rows before the page plus the
rows on it. `ShortPagePaginator` reads one row more than a page; if that row is not there
(the last page, and for most lists the only one) the COUNT is never sent, otherwise it is, as
before, and the rows already read are the page. The answer (`count`, `next`, `previous`,
`results`, 404 for a page past the end) is the same either way.
"""

from __future__ import annotations

from typing import Any

from django.core.paginator import Page, Paginator
from rest_framework import pagination
from rest_framework.exceptions import NotFound
from rest_framework.request import Request


class ShortPagePaginator(Paginator):
    def page(self, number: Any) -> Page:
        if self.orphans:
            return super().page(number)
        try:
            index = int(number)
        except (TypeError, ValueError):
            return super().page(number)  # raises PageNotAnInteger
        if index < 1:
            return super().page(number)  # raises EmptyPage
        bottom = (index - 1) * self.per_page
        rows = list(self.object_list[bottom : bottom + self.per_page + 1])
        if (rows and len(rows) <= self.per_page) or (not rows and index == 1):
            self.count = bottom + len(rows)  # cached_property: the COUNT is never sent
            return self._get_page(rows, index, self)
        # A full page with more after it (COUNT as usual), or past the end (EmptyPage).
        index = self.validate_number(index)
        return self._get_page(rows[: self.per_page], index, self)


class PageNumberPagination(pagination.PageNumberPagination):
    django_paginator_class = ShortPagePaginator

    def get_page_number(self, request: Request, paginator: Paginator) -> Any:
        # DRF reads `?page=` (empty) as page 1; it is no page number, refused as `?page=x` is.
        if request.query_params.get(self.page_query_param) == "":
            raise NotFound(self.invalid_page_message.format(page_number="", message="empty"))
        return super().get_page_number(request, paginator)
