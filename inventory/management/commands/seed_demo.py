from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from api_tokens.services import api_token_issue, api_tokens_revoke
from inventory.models import Product
from inventory.services import product_create

DEMO_PRODUCTS = [
    ("TSHIRT-BLK-M", "T-shirt, black, M", "19.90", 50),
    ("MUG-LOGO", "Mug with logo", "9.50", 100),
    ("HOODIE-GRY-L", "Hoodie, grey, L", "49.00", 10),
    ("POSTER-A2", "Poster A2", "14.00", 3),
    ("STICKER-PACK", "Sticker pack", "4.99", 1000),
    ("LIMITED-PRINT", "Limited print (sold out)", "199.00", 0),
]


class Command(BaseCommand):
    help = (
        "Create demo products with stock, a demo customer and a staff user for the admin, "
        "and issue both a new API token (only a digest of a token is stored, so an earlier "
        "one cannot be shown again; their earlier tokens are revoked). Otherwise "
        "idempotent: existing rows are left as they are."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--customer", default="demo", help="Demo customer username.")
        parser.add_argument("--password", default="demo-password", help="Password of both users.")
        parser.add_argument("--admin", default="admin", help="Staff username for /admin/.")

    @transaction.atomic
    def handle(self, *args: Any, customer: str, password: str, admin: str, **options: Any) -> None:
        created = 0
        for sku, name, price, on_hand in DEMO_PRODUCTS:
            if not Product.objects.filter(sku=sku).exists():
                product_create(sku=sku, name=name, price=Decimal(price), on_hand=on_hand)
                created += 1
        users = get_user_model().objects
        demo = users.filter(username=customer).first() or users.create_user(
            username=customer, password=password, email=f"{customer}@example.com"
        )
        staff = users.filter(username=admin).first() or users.create_superuser(
            username=admin, password=password, email=f"{admin}@example.com"
        )
        tokens = {}
        for user in (demo, staff):
            api_tokens_revoke(tokens=user.api_tokens.all())
            tokens[user] = api_token_issue(user=user)
        self.stdout.write(
            f"seeded {created} new products; customer {customer!r} token {tokens[demo]}; "
            f"admin user {admin!r} (password {password!r}) staff token {tokens[staff]}"
        )
