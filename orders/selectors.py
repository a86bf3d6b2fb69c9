import uuid

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from orders.models import Order


def order_list_for_customer(*, customer: AbstractBaseUser) -> QuerySet[Order]:
    """A customer's own orders, newest first; nobody else's are ever in it."""
    return Order.objects.filter(customer=customer).prefetch_related("lines").order_by("-created_at")


def order_get_for_customer(*, customer: AbstractBaseUser, order_id: uuid.UUID) -> Order | None:
    return order_list_for_customer(customer=customer).filter(id=order_id).first()
