"""Admin login brute force (django-axes): repeated failures lock out one username from one
address for the cool-off period, even with the right password; other addresses and other
usernames are not affected; staff see the lockout in the admin; it expires by itself."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from testing.polling import wait_until

pytestmark = pytest.mark.django_db

PASSWORD = "x-test-password-1"
ATTACKER, OFFICE = "203.0.113.66", "198.51.100.10"
COOL_OFF = timedelta(seconds=2)


@pytest.fixture(autouse=True)
def _short_cool_off(settings):  # type: ignore[no-untyped-def]
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = COOL_OFF


def _log_in(username: str, password: str, address: str) -> tuple[int, Client]:
    client = Client(REMOTE_ADDR=address)
    response = client.post(
        "/admin/login/?next=/admin/", {"username": username, "password": password}
    )
    return response.status_code, client


def _logged_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def test_repeated_failures_lock_out_that_account_from_that_address_until_the_cool_off():
    # Given two staff accounts
    users = get_user_model().objects
    users.create_superuser(username="boss", password=PASSWORD)
    users.create_superuser(username="clerk", password=PASSWORD)

    # When one address fails to log in as "boss" as often as allowed
    failures = [_log_in("boss", "guess", ATTACKER)[0] for _ in range(3)]
    assert failures[:2] == [200, 200]  # the login form again, with its error

    # Then "boss" is locked out from that address, even with the right password
    status, client = _log_in("boss", PASSWORD, ATTACKER)
    assert status == 429
    assert not _logged_in(client)
    # And the same account from another address, and another account from the same
    # address, still log in
    status, office = _log_in("boss", PASSWORD, OFFICE)
    assert status == 302 and _logged_in(office)
    status, clerk = _log_in("clerk", PASSWORD, ATTACKER)
    assert status == 302 and _logged_in(clerk)

    # And staff see the lockout in the admin
    attempts = office.get("/admin/axes/accessattempt/").content.decode()
    assert "boss" in attempts and ATTACKER in attempts

    # When the cool-off has passed since the last failure (each failure while locked out,
    # the refused right password included, starts it again)
    attempt = AccessAttempt.objects.get(username="boss", ip_address=ATTACKER)
    unlocked_at = attempt.attempt_time + COOL_OFF
    wait_until(lambda: timezone.now() > unlocked_at, timeout=COOL_OFF.total_seconds() + 5)

    # Then "boss" logs in from that address again
    status, client = _log_in("boss", PASSWORD, ATTACKER)
    assert status == 302 and _logged_in(client)
