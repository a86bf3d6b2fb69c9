"""E-mail through Django's mail backends (EMAIL_URL: the console locally, SMTP in
production; tests use Django's locmem outbox)."""

from django.conf import settings
from django.core.mail import send_mail

from notifications.channels import DeliveryOutcome, DeliveryResult, OutboundMessage


class EmailChannel:
    def send(self, message: OutboundMessage) -> DeliveryResult:
        send_mail(
            message.subject,
            message.body,
            settings.DEFAULT_FROM_EMAIL,
            [message.recipient],
            fail_silently=False,
        )
        return DeliveryResult(DeliveryOutcome.SENT)
