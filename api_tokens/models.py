import hashlib

from django.conf import settings
from django.db import models
from django.utils import timezone


def api_token_digest(key: str) -> str:
    """What is stored of a token. Tokens are 160 random bits, so a plain SHA-256 is enough:
    there is nothing to brute-force that a slow, salted hash would protect."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiToken(models.Model):
    """An API token (`Authorization: Token <key>`). Only the key's digest is stored: the key
    itself is shown once, when the token is issued."""

    digest = models.CharField(max_length=64, unique=True, editable=False)
    # The key's first characters, so that staff and the owner can tell tokens apart.
    prefix = models.CharField(max_length=8, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API token"
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > timezone.now()
        )
