"""API tokens: only a digest is stored; expired, revoked and inactive users' tokens are
refused; a token and its user are one statement; staff issue (key shown once) and revoke
tokens in the admin; clear tokens left by DRF's authtoken are hashed by a migration and keep
working; tokens issued before they moved into this app keep working; `seed_demo` prints a
token that works."""

import hashlib
import importlib
import re
from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from api_tokens.models import ApiToken
from api_tokens.selectors import api_token_get_active
from api_tokens.services import api_token_issue
from testing.factories import customer_create

pytestmark = pytest.mark.django_db


def _status_with(key: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/orders/").status_code


def _staff_client() -> Client:
    client = Client()
    client.force_login(
        get_user_model().objects.create_superuser(username="boss", password="x-test-password-1")
    )
    return client


def test_only_a_digest_of_the_key_is_stored():
    # Given a token issued to a customer
    customer = customer_create()
    key = api_token_issue(user=customer)

    # Then the key authenticates, but appears nowhere in the database: only its digest
    assert _status_with(key) == 200
    token = ApiToken.objects.get(user=customer)
    assert token.digest == hashlib.sha256(key.encode()).hexdigest()
    assert token.prefix == key[:8]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiToken._meta.db_table}")
        assert not any(key in str(value) for row in cursor.fetchall() for value in row)
    # And new tokens expire after API_TOKEN_TTL_DAYS
    assert token.expires_at is not None
    assert token.expires_at - timezone.now() > timedelta(days=89)


def test_expired_revoked_and_inactive_users_tokens_are_refused():
    customer = customer_create()
    expired = api_token_issue(user=customer, expires_at=timezone.now() - timedelta(seconds=1))
    revoked = api_token_issue(user=customer)
    ApiToken.objects.filter(prefix=revoked[:8]).update(revoked_at=timezone.now())
    valid = api_token_issue(user=customer)
    assert _status_with(valid) == 200

    assert _status_with(expired) == 401
    assert _status_with(revoked) == 401
    assert _status_with(valid[:-1] + ("0" if valid[-1] != "0" else "1")) == 401
    customer.is_active = False
    customer.save(update_fields=["is_active"])
    assert _status_with(valid) == 401


def test_a_token_and_its_user_are_one_statement_and_come_back_as_stored(
    django_assert_num_queries,
):
    customer = customer_create()
    key = api_token_issue(user=customer, expires_at=timezone.now() + timedelta(days=1))
    stored = ApiToken.objects.select_related("user").get(user=customer)

    with django_assert_num_queries(1):
        token = api_token_get_active(key=key)

    assert token is not None
    assert (token.pk, token.prefix, token.expires_at, token.revoked_at) == (
        stored.pk,
        stored.prefix,
        stored.expires_at,
        None,
    )
    assert (token.user.pk, token.user.email, token.user.is_active) == (
        customer.pk,
        customer.email,
        True,
    )
    assert api_token_get_active(key=key + "0") is None


def test_staff_issue_a_token_in_the_admin_and_see_its_key_once():
    # Given staff in the admin, and a customer
    staff, customer = _staff_client(), customer_create()

    # When staff add a token for the customer
    response = staff.post(
        "/admin/api_tokens/apitoken/add/",
        {"user": customer.pk, "expires_at_0": "2999-01-01", "expires_at_1": "00:00:00"},
        follow=True,
    )

    # Then the key is shown once, and it works
    assert response.status_code == 200
    (key,) = re.findall(r"<code>([0-9a-f]{40})</code>", response.content.decode())
    assert _status_with(key) == 200
    token = ApiToken.objects.get(user=customer)
    assert token.expires_at.year == 2999
    # And it is not shown again: the token's page has only its prefix
    page = staff.get(f"/admin/api_tokens/apitoken/{token.pk}/change/").content.decode()
    assert key[:8] in page and key not in page


def test_staff_revoke_tokens_in_the_admin():
    # Given a customer's two tokens, both working
    staff, customer = _staff_client(), customer_create()
    revoked_key, kept_key = api_token_issue(user=customer), api_token_issue(user=customer)
    revoked = ApiToken.objects.get(prefix=revoked_key[:8])

    # When staff revoke one of them
    response = staff.post(
        "/admin/api_tokens/apitoken/",
        {"action": "revoke", ACTION_CHECKBOX_NAME: [revoked.pk]},
        follow=True,
    )

    # Then that one is refused from now on, the other still works, and the record stays
    assert "1 token(s) revoked." in response.content.decode()
    assert _status_with(revoked_key) == 401
    assert _status_with(kept_key) == 200
    revoked.refresh_from_db()
    assert revoked.revoked_at is not None and not revoked.is_active


def test_clear_tokens_of_drf_authtoken_are_hashed_and_keep_working():
    # Given a database still holding DRF authtoken's table, with a clear token in it
    customer = customer_create()
    legacy_key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created timestamp with time zone NOT NULL, user_id integer NOT NULL UNIQUE)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, %s, %s)",
            [legacy_key, timezone.now(), customer.pk],
        )
    assert _status_with(legacy_key) == 401  # not known yet

    # When the data migration runs
    migration = importlib.import_module("api_tokens.migrations.0002_hash_legacy_tokens")
    with connection.schema_editor() as editor:
        migration.hash_legacy_tokens(apps, editor)

    # Then the same key authenticates the same customer, and no clear copy is left
    assert _status_with(legacy_key) == 200
    assert ApiToken.objects.get(prefix=legacy_key[:8]).user == customer
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM authtoken_token")
        assert cursor.fetchone() == (0,)


@pytest.mark.django_db(transaction=True)
def test_tokens_issued_before_the_app_existed_keep_working():
    # Given a token in the table the project package kept tokens in before this app existed
    key = api_token_issue(user=customer_create())
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE api_tokens_apitoken RENAME TO ecommerce_apitoken")
        cursor.execute("DELETE FROM django_migrations WHERE app = 'api_tokens'")

    # When this app's migrations run
    call_command("migrate", "api_tokens", verbosity=0)

    # Then the table is adopted under its new name, rows kept, and the token authenticates
    assert "ecommerce_apitoken" not in connection.introspection.table_names()
    assert _status_with(key) == 200


def test_seed_demo_prints_a_working_token_and_revokes_the_previous_one(capsys):
    # When seed_demo runs twice
    call_command("seed_demo")
    first = re.search(r"token (\w+)", capsys.readouterr().out).group(1)  # type: ignore[union-attr]
    call_command("seed_demo")
    printed = capsys.readouterr().out
    second = re.search(r"token (\w+)", printed).group(1)  # type: ignore[union-attr]
    staff = re.search(r"staff token (\w+)", printed).group(1)  # type: ignore[union-attr]

    # Then the token it printed last works, and the earlier one no longer does
    assert _status_with(second) == 200
    assert _status_with(first) == 401
    # and the staff token it prints too belongs to the staff user (to ship orders by API)
    assert _status_with(staff) == 200
    assert ApiToken.objects.get(prefix=staff[:8]).user.is_staff
