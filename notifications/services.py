import uuid

from django.contrib.auth import get_user_model
from django.db import transaction

from notifications.models import Notification

MESSAGES: dict[str, tuple[str, str]] = {
    Notification.Kind.ORDER_CONFIRMED: (
        "Your order {short_id} is confirmed",
        "Good news: every item of order {order_id} is reserved for you.",
    ),
    Notification.Kind.OUT_OF_STOCK: (
        "Your order {short_id} could not be fulfilled",
        "Sorry: order {order_id} could not be reserved. Out of stock: {detail}.",
    ),
}


@transaction.atomic
def notification_create(
    *, customer_id: int, order_id: uuid.UUID, kind: str, event_id: uuid.UUID, detail: str = ""
) -> Notification:
    """Create the notification of `kind` caused by `event_id`, once: a second call for the
    same event returns the first notification."""
    subject, body = MESSAGES[kind]
    context = {"order_id": order_id, "short_id": str(order_id)[:8], "detail": detail}
    notification, _created = Notification.objects.get_or_create(
        event_id=event_id,
        kind=kind,
        channel=Notification.Channel.EMAIL,
        defaults={
            "customer": get_user_model().objects.get(pk=customer_id),
            "order_id": order_id,
            "subject": subject.format(**context),
            "body": body.format(**context),
        },
    )
    return notification
