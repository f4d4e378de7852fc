"""Scaling out: workers are stateless, so more processes or hosts against one Redis share the work.

A second `python -m jobs.worker` with its own data folder and environment plays a second host
(as `docker compose up --scale worker=2` starts a second container): both take jobs from the
same queues, every URL gets exactly one record, and none is fetched twice.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from config import PROJECT_ROOT
from tests.support.fixture_server import FixtureServer, Reply
from tests.support.processes import WORKER_COMMAND, service_env, start, start_service, stop, wait_for_batch

pytestmark = pytest.mark.e2e
BOOK = (PROJECT_ROOT / "tests" / "fixtures" / "goodreads" / "next-data.html").read_bytes()
URLS = [f"https://www.goodreads.com/book/show/{n}" for n in range(1, 41)]


@pytest.fixture
def site():
    server = FixtureServer(["www.goodreads.com"])
    server.fallback = Reply(200, BOOK)
    server.start()
    yield server
    server.stop()


def job_lines(log: Path) -> set[str]:
    """Ids of the jobs a worker process's JSON log says it finished."""
    ids = set()
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("job_id") and "Successfully completed" in str(entry.get("message", "")):
            ids.add(entry["job_id"])
    return ids


def test_two_worker_hosts_share_one_redis_and_each_url_is_done_once(site, redis_client, redis_url, tmp_path):
    env = service_env(REDIS_URL=redis_url, LOG_LEVEL="INFO", FETCH_HOST_DELAY="0", FETCH_HOST_CONCURRENCY="8",
                      ROBOTS_TXT="false", **site.fetch_env(tmp_path, "www.goodreads.com"))
    service = start_service(env, tmp_path, workers=1, name="SCALE")
    second_env = {**service.worker_env, "DATA_DIR": str(tmp_path / "second-host")}  # nothing shared but Redis
    second = start(WORKER_COMMAND, second_env, tmp_path / "second.log")
    try:
        time.sleep(3)  # both hosts registered before the work arrives
        assert os.getpriority(os.PRIO_PROCESS, second.pid) == 10, "workers yield the CPU to web (WORKER_NICE)"
        autogroup = Path(f"/proc/{second.pid}/autogroup")  # it leads its own session: its autogroup too
        assert not autogroup.exists() or autogroup.read_text().strip().endswith("nice 10"), autogroup.read_text()
        accepted = requests.post(f"{service.base}/parse", json={"urls": URLS}, timeout=10).json()
        summary = wait_for_batch(service.base, accepted["batch_id"])
    finally:
        stop(second)
        service.stop()
    first_jobs, second_jobs = job_lines(service.worker_log), job_lines(tmp_path / "second.log")
    assert summary["counts"] == {"done": len(URLS)}
    assert first_jobs and second_jobs, "both hosts took jobs"
    assert not first_jobs & second_jobs, "no job ran on both hosts"
    assert [site.hits.get(url.split(".com", 1)[1]) for url in URLS] == [1] * len(URLS), "each page fetched once"


def test_compose_worker_service_can_be_scaled():
    """`--scale worker=N` needs a worker with no fixed name, no published port, no private volume."""
    worker = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker and "volumes" not in worker
    assert urlsplit(worker["environment"]["REDIS_URL"]).netloc.rpartition("@")[2] == "redis:6379", \
        "every replica shares the one Redis"
