"""The settings each benchmarked system ran with, printed beside its figures.

A figure means little without them: the service's throughput with politeness off (the
bench's FAST_SETTINGS) and with the shipped one-request-a-second-per-host are different
systems, and a Redis with or without its append-only file does different work per write.
Every part stores one of these dicts per system in its result and prints describe() of it.
"""
from __future__ import annotations

from collections.abc import Mapping

from config import Settings
from tests.support.redis_server import RedisServer

# What the service reads when its environment leaves a setting out: the shipped defaults.
SHIPPED = {
    "FETCH_HOST_DELAY": str(Settings.fetch_host_delay), "FETCH_HOST_CONCURRENCY": str(Settings.fetch_host_concurrency),
    "ROBOTS_TXT": str(Settings.robots_txt).lower(), "RATE_LIMITS": str(Settings.rate_limits).lower(),
    "LOG_LEVEL": Settings.log_level, "WORKERS": str(Settings.workers),
}
NO_SERVICE = {"system": "none: parsers called in the bench's own process (no service, Redis or workers)"}


def service(env: Mapping[str, str], redis: RedisServer, system: str = "service") -> dict:
    """The service's settings as its processes read them: env first, else the shipped default."""
    value = {name: env.get(name, default) for name, default in SHIPPED.items()}
    return {"system": system, "host_delay_s": value["FETCH_HOST_DELAY"],
            "host_concurrency": value["FETCH_HOST_CONCURRENCY"], "robots_txt": value["ROBOTS_TXT"],
            "rate_limits": value["RATE_LIMITS"], "log_level": value["LOG_LEVEL"],
            "redis_appendonly": redis.appendonly, "workers": int(value["WORKERS"])}


def baseline(system: str, workers: int, redis: RedisServer, log_level: str) -> dict:
    """A baseline has no politeness, robots.txt or API (so no rate limits) at all."""
    return {"system": system, "host_delay_s": "none", "host_concurrency": "unlimited", "robots_txt": "not read",
            "rate_limits": "none (no API)", "log_level": log_level, "redis_appendonly": redis.appendonly,
            "workers": workers}


def describe(ran: Mapping[str, object]) -> str:
    """One line: politeness, robots.txt, rate limits, log level, Redis persistence, workers."""
    if "workers" not in ran:
        return f"ran with: {ran['system']}"
    return (f"{ran['system']} ran with: FETCH_HOST_DELAY={ran['host_delay_s']} "
            f"FETCH_HOST_CONCURRENCY={ran['host_concurrency']}, robots.txt {ran['robots_txt']}, "
            f"rate limits {ran['rate_limits']}, log level {ran['log_level']}, "
            f"Redis appendonly {'yes' if ran['redis_appendonly'] else 'no'}, {ran['workers']} worker processes")
