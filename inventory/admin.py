"""Inventory admin: products with their stock, a stock-level filter, a restock action, and a
read-only view of reservations (those only change through the stock services)."""

from functools import cache
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import F, QuerySet, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.template import engines
from django.template.backends.django import Template
from django.template.response import TemplateResponse
from django.utils.translation import ngettext

from common.admin import ExactUUIDSearchMixin, ReadOnlyAdminMixin
from inventory.models import Product, Reservation, StockLevel
from inventory.services import stock_restock

LOW_STOCK_THRESHOLD = 10
RESTOCK_DEFAULT_QUANTITY = 10
RESTOCK_MAX_QUANTITY = 100_000


def _with_stock(queryset: QuerySet[Product]) -> QuerySet[Product]:
    """Annotate on-hand, reserved and available units; a product without a stock row has 0."""
    return queryset.select_related("stock").annotate(
        stock_on_hand=Coalesce(F("stock__on_hand"), Value(0)),
        stock_reserved=Coalesce(F("stock__reserved"), Value(0)),
        stock_available=Coalesce(F("stock__on_hand") - F("stock__reserved"), Value(0)),
    )


class StockLevelFilter(admin.SimpleListFilter):
    """Available units (on hand minus reserved); needs the `_with_stock` annotations."""

    title = "stock level"
    parameter_name = "stock"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("out", "out of stock (0)"),
            ("low", f"low (<{LOW_STOCK_THRESHOLD})"),
            ("ok", f"ok (≥{LOW_STOCK_THRESHOLD})"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Product]) -> QuerySet[Product]:
        if self.value() == "out":
            return queryset.filter(stock_available__lte=0)
        if self.value() == "low":
            return queryset.filter(stock_available__gt=0, stock_available__lt=LOW_STOCK_THRESHOLD)
        if self.value() == "ok":
            return queryset.filter(stock_available__gte=LOW_STOCK_THRESHOLD)
        return queryset


class StockLevelForm(forms.ModelForm):
    on_hand = forms.IntegerField(min_value=0)

    class Meta:
        model = StockLevel
        fields = ("on_hand",)

    def has_changed(self) -> bool:
        # Always save the stock row of a product that has none yet (e.g. a new product),
        # even when the default on-hand count was left untouched.
        return self.instance.pk is None or super().has_changed()

    def clean_on_hand(self) -> int:
        on_hand: int = self.cleaned_data["on_hand"]
        if on_hand < self.instance.reserved:
            raise forms.ValidationError(
                f"{self.instance.reserved} units are reserved by open orders; "
                "on hand cannot be lower."
            )
        return on_hand

    def save(self, commit: bool = True) -> StockLevel:
        if commit and self.instance.pk is not None:
            # Write on_hand only: `reserved` moves concurrently through the stock services,
            # and a full-row save would write back the value this form happened to read.
            self.instance.save(update_fields=["on_hand", "updated_at"])
            return self.instance
        return super().save(commit=commit)


class StockLevelInline(admin.StackedInline):
    model = StockLevel
    form = StockLevelForm
    fields = ("on_hand", "reserved", "available", "updated_at")
    readonly_fields = ("reserved", "available", "updated_at")
    can_delete = False
    min_num = 1
    max_num = 1
    extra = 0

    @admin.display(description="available")
    def available(self, stock: StockLevel) -> int | str:
        return stock.available if stock.pk else "-"


class RestockForm(forms.Form):
    quantity = forms.IntegerField(
        min_value=1,
        max_value=RESTOCK_MAX_QUANTITY,
        initial=RESTOCK_DEFAULT_QUANTITY,
        help_text="Units added to the on-hand stock of each selected product.",
    )


RESTOCK_TEMPLATE = """\
{% extends "admin/base_site.html" %}
{% load admin_urls %}
{% block bodyclass %}{{ block.super }} app-{{ opts.app_label }} model-{{ opts.model_name }}
{% endblock %}
{% block breadcrumbs %}
<div class="breadcrumbs">
  <a href="{% url 'admin:index' %}">Home</a>
  &rsaquo; <a href="{% url 'admin:app_list' app_label=opts.app_label %}">
    {{ opts.app_config.verbose_name }}</a>
  &rsaquo; <a href="{% url opts|admin_urlname:'changelist' %}">
    {{ opts.verbose_name_plural|capfirst }}</a>
  &rsaquo; {{ title }}
</div>
{% endblock %}
{% block content %}
<p>Add units to the on-hand stock of these products:</p>
<ul>
  {% for product in products %}
  <li>{{ product.sku }} — {{ product.name }} ({{ product.stock_on_hand }} on hand,
    {{ product.stock_available }} available)</li>
  {% endfor %}
</ul>
<form method="post">{% csrf_token %}
  <fieldset class="module aligned">{% for field in form %}
    <div class="form-row">
      {{ field.errors }}{{ field.label_tag }} {{ field }}
      {% if field.help_text %}<div class="help">{{ field.help_text }}</div>{% endif %}
    </div>{% endfor %}
  </fieldset>
  {% for product in products %}
  <input type="hidden" name="{{ action_checkbox_name }}" value="{{ product.pk }}">
  {% endfor %}
  <input type="hidden" name="action" value="restock">
  <div class="submit-row">
    <input type="submit" name="apply" value="Restock" class="default">
    <a href="{% url opts|admin_urlname:'changelist' %}" class="button cancel-link">Cancel</a>
  </div>
</form>
{% endblock %}
"""


@cache
def _restock_template() -> Template:
    return engines["django"].from_string(RESTOCK_TEMPLATE)


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("sku", "name", "price", "active", "on_hand", "reserved", "available")
    list_filter = (StockLevelFilter, "active")
    search_fields = ("sku", "name")
    inlines = (StockLevelInline,)
    actions = ("restock",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Product]:
        return _with_stock(super().get_queryset(request))

    def get_readonly_fields(self, request: HttpRequest, obj: Product | None = None) -> Any:
        # Order lines refer to products by SKU, so an existing SKU never changes.
        return ("sku", "created_at") if obj is not None else ("created_at",)

    @admin.display(description="on hand", ordering="stock_on_hand")
    def on_hand(self, product: Product) -> int:
        return product.stock_on_hand  # type: ignore[attr-defined]

    @admin.display(description="reserved", ordering="stock_reserved")
    def reserved(self, product: Product) -> int:
        return product.stock_reserved  # type: ignore[attr-defined]

    @admin.display(description="available", ordering="stock_available")
    def available(self, product: Product) -> int:
        return product.stock_available  # type: ignore[attr-defined]

    @admin.action(description="Restock selected products…", permissions=["change"])
    def restock(self, request: HttpRequest, queryset: QuerySet[Product]) -> TemplateResponse | None:
        """Ask for a quantity, then add it to each selected product through `stock_restock`."""
        products = list(queryset.order_by("pk"))
        form = RestockForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            quantity: int = form.cleaned_data["quantity"]
            # One short transaction per product (inside the service): no lock is held across
            # products, so this cannot deadlock with reservations locking in key order.
            for product in products:
                stock_restock(product=product, quantity=quantity)
            self.message_user(
                request,
                ngettext(
                    "Restocked %(count)d product by %(quantity)d units: %(skus)s.",
                    "Restocked %(count)d products by %(quantity)d units each: %(skus)s.",
                    len(products),
                )
                % {
                    "count": len(products),
                    "quantity": quantity,
                    "skus": ", ".join(p.sku for p in products),
                },
                messages.SUCCESS,
            )
            return None  # back to the change list
        context = {
            **self.admin_site.each_context(request),
            "title": "Restock products",
            "opts": self.opts,
            "products": products,
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, _restock_template(), context)


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdminMixin, ExactUUIDSearchMixin, admin.ModelAdmin):
    list_display = ("order_id", "product", "quantity", "status", "created_at")
    list_filter = ("status", "created_at")
    list_select_related = ("product",)
    search_fields = ("product__sku",)
    uuid_search_fields = ("order_id",)
    search_help_text = "A full order id, or part of a product SKU."
    fields = ("order_id", "product", "quantity", "status", "created_at", "updated_at")
    readonly_fields = ("created_at", "updated_at")
