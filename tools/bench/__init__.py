"""The pipeline benchmark (`make bench`, `python -m tools.bench`): the product as deployed.

gunicorn (gunicorn.conf.py, WEB_CONCURRENCY workers), the outbox relay, one process per
consumer group and a Celery worker run as children of one Supervisor, in a fresh Kafka
namespace and Celery queue, against the configured PostgreSQL, Redis and broker. Orders
arrive over HTTP/1.1 keep-alive from a separate load-generator process (loadgen.py). One run
reports, in this order:

- ceiling: the load generator against a trivial endpoint of the same gunicorn, with its own
  CPU use: it is not the bottleneck when this is far above the order intake;
- (a) intake with the workers idle: orders/s the API takes on its own (closed loop); the
  orders wait in the outbox and become the backlog of (b);
- (e) raw baselines, run here while nothing else runs: a tight produce loop over the relay's
  own messages with the relay's producer settings, raw consume, produce→consume latency;
- (b) backlog drain, one stage at a time: the relay, then each consumer group alone once its
  input is in Kafka (inventory, orders, notifications), events/s from the timestamps the
  tables hold; orders paid/s for the orders group;
- (c) everything running at saturation: intake, orders completed end to end in the same
  window, and their ratio;
- (d) a fixed rate (open loop, 100 orders/s for 30 s): created → last notice p50/p95/p99 and a
  per-hop breakdown (outbox wait, relay → consumer, handler);
- (f) the same open loop at lower rates (10, 25 and 50 orders/s for 20 s each by default):
  latency against load, to read off up to which rate a latency target holds on this machine.
Figures are never asserted; the test only checks that the command works end to end.
"""
