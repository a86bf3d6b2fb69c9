"""Celery entry points of kafka_bridge: thin calls into its services."""

import logging
from dataclasses import asdict

from celery import shared_task

from kafka_bridge.retention import event_tables_prune as prune

logger = logging.getLogger(__name__)


@shared_task
def event_tables_prune() -> dict[str, int]:
    """Beat task: apply the outbox and ProcessedEvent retention (kafka_bridge.retention)."""
    result = asdict(prune())
    if any(result.values()):
        logger.info("retention: %s", ", ".join(f"{k}={v}" for k, v in result.items()))
    return result
