from django.db import models

from risk.review import Decision, Review


class RiskAssessment(models.Model):
    """The risk check of one order, made once, before its charge; and the staff review of a
    hold. A redelivered event finds it and decides nothing again.

    Orders are referred to by id, as other apps do: the risk app reads orders only through
    `orders.selectors`."""

    order_id = models.UUIDField(unique=True)
    customer_id = models.BigIntegerField(db_index=True)
    score = models.IntegerField()
    decision = models.CharField(max_length=10, choices=Decision.choices, db_index=True)
    # Every rule evaluated: [{"rule": name, "points": n, "reason": text}], in rule order,
    # those that gave no points included (what tuning reads).
    rules = models.JSONField(default=list)
    # The thresholds in force when it was decided.
    review_score = models.IntegerField()
    block_score = models.IntegerField()
    assessed_at = models.DateTimeField(db_index=True)
    review = models.CharField(max_length=10, choices=Review.choices, blank=True, default="")
    reviewed_by = models.CharField(max_length=150, blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-assessed_at"]

    def __str__(self) -> str:
        return f"order {self.order_id}: {self.score} ({self.decision})"

    @property
    def reasons(self) -> list[str]:
        """The reasons of the rules that gave points, most points first."""
        scored = sorted((r for r in self.rules if r["points"]), key=lambda r: -r["points"])
        return [r["reason"] for r in scored]
