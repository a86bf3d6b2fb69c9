"""What a risk assessment decides, and how staff review a hold: every decision and every
allowed review in one place (the order's own statuses are in orders/status.py).

    score < review score ─▶ approve ─▶ the order is charged
    review ≤ score < block ─▶ hold ─▶ (order `held`) ─▶ approved by staff ─▶ charged
                                                   └─▶ rejected by staff ─▶ cancelled
    score ≥ block score ─▶ block ─▶ the order is cancelled, its stock released

A hold is reviewed once; the other decisions are never reviewed.
"""

from django.db import models


class Decision(models.TextChoices):
    APPROVE = "approve", "Approve (charged)"
    HOLD = "hold", "Hold for review"
    BLOCK = "block", "Block (cancelled)"


class Review(models.TextChoices):
    NONE = "", "Not reviewed"
    APPROVED = "approved", "Approved by staff"
    REJECTED = "rejected", "Rejected by staff"


REVIEWS: dict[tuple[str, str], frozenset[str]] = {
    (Decision.HOLD, Review.NONE): frozenset({Review.APPROVED, Review.REJECTED}),
}


class ReviewRefused(Exception):
    """The assessment cannot take this review (not a hold, or already reviewed)."""

    def __init__(self, *, decision: str, review: str, target: str) -> None:
        done = f", already {review}" if review else ""
        super().__init__(f"a {decision} decision{done} cannot be {target}")
        self.decision = decision
        self.review = review
        self.target = target


def review_check(*, decision: str, review: str, target: str) -> None:
    if target not in REVIEWS.get((decision, review), frozenset()):
        raise ReviewRefused(decision=decision, review=review, target=target)
