"""Risk admin: view-only. Assessments are made by the risk check and reviewed through the
order's admin actions (approve, reject) or the staff API; this list is where thresholds are
tuned: filter by decision and review, sort by score, read each rule's points."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from common.admin import ExactUUIDSearchMixin, ReadOnlyAdminMixin, short_id
from risk.models import RiskAssessment


@admin.register(RiskAssessment)
class RiskAssessmentAdmin(ReadOnlyAdminMixin, ExactUUIDSearchMixin, admin.ModelAdmin):
    list_display = (
        "order",
        "customer_id",
        "score",
        "decision",
        "review",
        "reasons_text",
        "assessed_at",
    )
    list_filter = ("decision", "review", "assessed_at")
    date_hierarchy = "assessed_at"
    search_fields = ("=customer_id",)
    uuid_search_fields = ("order_id",)
    search_help_text = "A full order id, or a customer id."
    fieldsets = (
        (None, {"fields": ("order_id", "customer_id", "score", "decision", "assessed_at")}),
        ("Rules", {"fields": ("rules_table", "review_score", "block_score")}),
        ("Review", {"fields": ("review", "reviewed_by", "reviewed_at")}),
    )
    readonly_fields = ("rules_table",)

    @admin.display(description="order", ordering="order_id")
    def order(self, assessment: RiskAssessment) -> SafeString:
        order_page = reverse("admin:orders_order_change", args=[assessment.order_id])
        return short_id(assessment.order_id, href=order_page)

    @admin.display(description="reasons")
    def reasons_text(self, assessment: RiskAssessment) -> str:
        return "; ".join(assessment.reasons) or "—"

    @admin.display(description="every rule")
    def rules_table(self, assessment: RiskAssessment) -> SafeString:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((r["rule"], r["points"], r["reason"] or "—") for r in assessment.rules),
        )
        return format_html(
            "<table><tr><th>rule</th><th>points</th><th>reason</th></tr>{}</table>", rows
        )
