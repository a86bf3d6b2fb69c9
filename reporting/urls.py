from django.urls import path

from reporting.apis import CustomerSummaryApi, OrderRateApi, ProductSalesApi

urlpatterns = [
    path("metrics/order-rate/", OrderRateApi.as_view(), name="metrics-order-rate"),
    path("reports/product-sales/", ProductSalesApi.as_view(), name="reports-product-sales"),
    path("reports/customers/", CustomerSummaryApi.as_view(), name="reports-customers"),
]
