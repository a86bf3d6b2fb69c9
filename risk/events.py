"""The events the risk app publishes: the assessment of an order before its charge
(`risk.assessed`). Registered from RiskConfig.ready(); the released JSON Schemas are in
`risk/schemas/`.

The order's own moves (`orders.held`, and `orders.cancelled` for a block) are the orders
app's events, recorded in the same transaction.
"""

import uuid

from kafka_bridge.contracts import EventType, Payload


class RuleScoreV1(Payload):
    rule: str
    points: int
    reason: str = ""


class RiskAssessedV1(Payload):
    order_id: uuid.UUID
    customer_id: int
    score: int
    # "approve" (charged), "hold" (held for staff review) or "block" (cancelled).
    decision: str
    # The reasons of the rules that gave points, most points first.
    reasons: list[str]
    # Every rule evaluated, with its points (0: it did not apply).
    rules: list[RuleScoreV1]
    # The thresholds in force.
    review_score: int
    block_score: int


EVENT_TYPES = [
    EventType("risk.assessed", topic="risk", versions={1: RiskAssessedV1}),
]
