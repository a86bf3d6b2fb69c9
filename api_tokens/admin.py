"""API tokens in the admin: staff issue tokens (the key is shown once, then only its digest
is kept) and revoke them. Nothing else about a token can be changed."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.utils.html import format_html

from api_tokens.models import ApiToken
from api_tokens.services import api_token_default_expiry, api_token_key_assign, api_tokens_revoke


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "user", "created_at", "expires_at", "revoked_at", "active")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), "expires_at", "created_at")
    search_fields = ("prefix", "user__username", "user__email")
    list_select_related = ("user",)
    autocomplete_fields = ("user",)
    actions = ("revoke",)

    @admin.display(boolean=True)
    def active(self, token: ApiToken) -> bool:
        return token.is_active

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        if obj is None:
            return ["user", "expires_at"]
        return ["prefix", "user", "created_at", "expires_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        return [] if obj is None else self.get_fields(request, obj)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {
            **super().get_changeform_initial_data(request),
            "expires_at": api_token_default_expiry(),
        }

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoked, not deleted: the record stays

    def save_model(
        self, request: HttpRequest, obj: ApiToken, form: ModelForm, change: bool
    ) -> None:
        if change:
            return
        key = api_token_key_assign(obj)
        super().save_model(request, obj, form, change)
        messages.warning(
            request,
            format_html(
                "The new token for {} is <code>{}</code>. Copy it now: it is not stored and "
                "cannot be shown again.",
                obj.user,
                key,
            ),
        )

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = api_tokens_revoke(tokens=queryset)
        self.message_user(request, f"{revoked} token(s) revoked.", messages.SUCCESS)
