"""GET /metrics: the samples every process wrote (metrics.py's folder), and the state of the
queues read from Redis at scrape time: jobs waiting in each RQ queue, and the frontier's
busiest hosts with their delays.

prometheus_client is imported inside the functions, as in metrics.py: its multiprocess mode
is chosen when it is imported, which must come after metrics.setup_multiprocess_dir.
"""
from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app
from redis.exceptions import RedisError
from rq import Queue

from jobs import frontier
from metrics import FilesCollector, multiprocess_dir, web_log
from sources import QUEUE_NAMES

MAX_HOST_SERIES = 50  # hosts given their own metaparse_host_* series, the busiest first


def init_app(app: Flask) -> None:
    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])


def metrics_view() -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(FilesCollector(multiprocess_dir()))
    registry.register(QueueDepthCollector(current_app.config["REDIS"]))
    registry.register(HostCollector(current_app.config["REDIS"], current_app.config["SETTINGS"].fetch_host_delay))
    return Response(generate_latest(registry), mimetype=None, content_type=CONTENT_TYPE_LATEST)


class QueueDepthCollector:
    """metaparse_queue_depth{queue}: jobs waiting in each queue, read from Redis at scrape time."""

    def __init__(self, connection: Any):
        self.connection = connection

    def collect(self) -> list:
        from prometheus_client.core import GaugeMetricFamily

        try:  # RQ's own count, a round trip per queue: a few a scrape
            counts = [Queue(name, connection=self.connection).count for name in QUEUE_NAMES]
        except RedisError as exc:
            web_log.warning("queue depth not read for /metrics: %s", exc)
            return []
        family = GaugeMetricFamily("metaparse_queue_depth", "Jobs waiting in each RQ queue (page jobs move on at"
                                   " once to wait per host: metaparse_frontier_jobs).", labels=["queue"])
        for name, count in zip(QUEUE_NAMES, counts):
            family.add_metric([name], count)
        return [family]


class HostCollector:
    """The frontier at scrape time: jobs waiting per host (the MAX_HOST_SERIES busiest: label
    values stay bounded however many hosts there are) and those hosts' delays, plus the totals."""

    def __init__(self, connection: Any, default_delay: float):
        self.connection, self.default_delay = connection, default_delay

    def collect(self) -> list:
        from prometheus_client.core import GaugeMetricFamily

        try:
            total, hosts, busiest = frontier.backlog_summary(self.connection, MAX_HOST_SERIES)
            schedules = frontier.host_schedules(self.connection, [host for host, _ in busiest], self.default_delay)
        except RedisError as exc:
            web_log.warning("host backlog not read for /metrics: %s", exc)
            return []
        backlog = GaugeMetricFamily("metaparse_host_backlog", "Page jobs waiting for their host's turn, by host"
                                    f" (the {MAX_HOST_SERIES} busiest hosts).", labels=["host"])
        delay = GaugeMetricFamily("metaparse_host_delay_seconds", "Seconds between request starts to a host,"
                                  " as adapted to its answers (the same hosts).", labels=["host"])
        for host, count in busiest:
            backlog.add_metric([host], count)
            delay.add_metric([host], schedules[host].delay)
        return [backlog, delay, GaugeMetricFamily("metaparse_frontier_jobs", "Page jobs waiting for a host's turn.",
                                                  value=total),
                GaugeMetricFamily("metaparse_frontier_hosts", "Hosts with page jobs waiting.", value=hosts)]
