"""Database sessions that ignore a session cookie which cannot be a real session key.

Django's cookie parser turns quoted octal escapes into any character, NUL included; such a
key would reach the session query and fail there (PostgreSQL text cannot hold NUL). Real
keys are lowercase letters and digits, so anything else is treated as no session at all.
"""

from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore


class SessionStore(DatabaseSessionStore):
    def _validate_session_key(self, key: str | None) -> bool:
        return super()._validate_session_key(key) and key.isascii() and key.isalnum()  # type: ignore[union-attr]
