"""The recording backend, for any channel: instead of sending, it stores the message in
`RecordedMessage`, which staff read in the admin (Notifications → Recorded messages).
`make run` and the tests use it for SMS and push, so nothing leaves the machine."""

from notifications.channels import DeliveryOutcome, DeliveryResult, OutboundMessage
from notifications.models import RecordedMessage


class RecordingChannel:
    def send(self, message: OutboundMessage) -> DeliveryResult:
        recorded = RecordedMessage.objects.create(
            channel=message.channel,
            recipient=message.recipient,
            subject=message.subject,
            body=message.body,
            payload=message.data.get("payload", {}),
            notification_id=message.notification_id,
        )
        return DeliveryResult(DeliveryOutcome.SENT, detail=f"recorded-{recorded.pk}")
