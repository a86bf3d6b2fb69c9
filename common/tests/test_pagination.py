"""Page-number pagination reads no COUNT when the page shows the count (common/pagination.py),
and answers exactly as Django's Paginator does."""

import pytest
from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from common.pagination import PageNumberPagination, ShortPagePaginator
from inventory.models import Product
from inventory.selectors import product_list_available
from testing.factories import product_with_stock

pytestmark = pytest.mark.django_db


def _pages(paginator_class: type[Paginator], number: object) -> tuple[int, int, list[str]]:
    paginator = paginator_class(product_list_available(), 20)
    page = paginator.page(number)
    return paginator.count, paginator.num_pages, [p["sku"] for p in page.object_list]


@pytest.mark.parametrize(
    ("products", "number", "queries"),
    [(0, 1, 1), (3, 1, 1), (20, 1, 1), (25, 1, 2), (25, 2, 1), (40, 2, 1), (41, 2, 2)],
)
def test_a_page_is_the_same_and_a_short_one_costs_no_count(
    products, number, queries, django_assert_num_queries
):
    # Given some products
    for _ in range(products):
        product_with_stock()
    assert Product.objects.count() == products

    # When a page is read with the short-page paginator
    with django_assert_num_queries(queries):
        mine = _pages(ShortPagePaginator, number)

    # Then it is Django's page, with one statement when the page is not full
    assert mine == _pages(Paginator, number)


@pytest.mark.parametrize(
    ("number", "error"), [(3, EmptyPage), (0, EmptyPage), ("x", PageNotAnInteger)]
)
def test_pages_that_are_not_there_fail_as_djangos_do(number, error):
    for _ in range(25):
        product_with_stock()

    with pytest.raises(error):
        ShortPagePaginator(product_list_available(), 20).page(number)


@pytest.mark.django_db
def test_an_empty_page_number_is_refused_as_any_other_that_is_not_one():
    # Given `?page=` with nothing after it (DRF alone would read it as page 1)
    request = Request(APIRequestFactory().get("/api/products/", {"page": ""}))

    # Then it is a 404, as `?page=x` is
    with pytest.raises(NotFound):
        PageNumberPagination().paginate_queryset(Product.objects.all(), request)
