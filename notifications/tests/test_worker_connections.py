"""A real Celery worker keeps its PostgreSQL connection across tasks (ecommerce/celery.py):
Celery's Django fix-up would open a new one for every task, a new server process each."""

import uuid

import pytest
from django.db import connection

from notifications.models import Notification
from notifications.tasks import notification_deliver
from testing.factories import customer_create
from testing.polling import wait_until

from .test_tasks import _notification

pytestmark = pytest.mark.integration


def _worker_connections(application_name: str) -> list[tuple[int, object]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE application_name = %s",
            [application_name],
        )
        return cursor.fetchall()


def test_worker_delivers_task_after_task_over_one_connection(pipeline, kafka_namespace):
    # Given a Celery worker whose database connections carry a name of their own (libpq
    # reads PGAPPNAME), and five notifications
    application_name = f"celery-test-{uuid.uuid4().hex[:8]}"
    pipeline.celery_worker(PGAPPNAME=application_name)
    customer = customer_create()
    notifications = [_notification(customer) for _ in range(5)]

    # When each is delivered by a task of its own, one after another
    for notification in notifications:
        notification_deliver.apply_async(args=[notification.id], queue=f"{kafka_namespace}celery")
        wait_until(
            lambda n=notification: Notification.objects.get(id=n.id).status == "sent",
            timeout=60,
            message=f"notification {notification.id} sent",
        )

    # Then the worker holds one connection, opened before the first e-mail was sent: every
    # task after the first reused it
    first_sent_at = Notification.objects.get(id=notifications[0].id).sent_at
    connections = _worker_connections(application_name)
    assert len(connections) == 1, connections
    assert connections[0][1] < first_sent_at
