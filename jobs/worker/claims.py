"""Claims: a popped job is never in no list and no registry.

RQ pops a job id with BLPOP when a worker listens on several queues; a worker killed
between that pop and registering the job in the StartedJobRegistry loses the job (it is in
no list and no registry). ClaimingQueue pops with a Lua script that moves the id into a
*claim* in the same step (storage.claim_key(job id), and a deadline in storage.JOB_CLAIMS).
The worker turns its claim into a started execution in one WATCH/MULTI transaction
(CrashSafeWorker.prepare_execution, base.py); a claim still there after CLAIM_SECONDS is
taken back, and the job put at the head of its queue, by any worker's maintenance
(sweep_claims, one Lua script). Page jobs are popped the same way by the frontier's
dispatch (jobs/frontier.py), which gives a job out only when its host's turn has come;
their claim names the job's lane in the frontier, and a claim taken back puts the job at
the head of that lane. Exactly one of the two happens, so a claimed job runs once or goes
back once, whatever dies when.

An empty-queue poll starts at DEQUEUE_FIRST_POLL (a Lua script cannot block), and RQ's
15-minute registry-cleaning lock is cut to CLEANING_LOCK_SECONDS, so a worker killed while
cleaning cannot stall cleaning for long.
"""
from __future__ import annotations

import logging
import math
import time

from redis import Redis
from redis.client import Pipeline
from rq import Queue
from rq.exceptions import DequeueTimeout
from rq.job import Job
from rq.serializers import JSONSerializer

from jobs import frontier
from jobs.trust import ServiceJob
from jobs.worker.timings import CLAIM_SECONDS
from storage import JOB_CLAIM, JOB_CLAIMS, claim_key

log = logging.getLogger(__name__)

DEQUEUE_POLL_SECONDS = 0.2  # the claiming pop polls (a Lua script cannot block), at most this far apart...
DEQUEUE_FIRST_POLL = 0.01  # ...starting this soon after finding the queues empty, doubling each time
CLEANING_LOCK_SECONDS = 30  # RQ holds its registry-cleaning lock 899 s

# KEYS[1] = JOB_CLAIMS, KEYS[2:] = queue keys in priority order; ARGV[1] = claim deadline,
# ARGV[2] = JOB_CLAIM prefix. Pops the first job found and claims it, in one atomic step.
CLAIMING_POP = """
for i = 2, #KEYS do
  local job_id = redis.call('LPOP', KEYS[i])
  if job_id then
    redis.call('SET', ARGV[2] .. job_id, KEYS[i])
    redis.call('ZADD', KEYS[1], ARGV[1], job_id)
    return {KEYS[i], job_id}
  end
end
return false
"""


class ClaimLost(Exception):
    """The claim was taken back (the job is on its queue again): do not run it."""


class ClaimingQueue(Queue):
    """A queue whose dequeue claims the job atomically (see the module docstring).

    JSON unless told otherwise, as every queue of the service: RQ's pool builds each worker's
    queues without a serializer, and their registries' cleaning (the abandoned-job path,
    crashes.py) must read the job's function and arguments. Its jobs are ServiceJobs."""

    job_class = ServiceJob
    claim_seconds = CLAIM_SECONDS
    poll_seconds = DEQUEUE_POLL_SECONDS
    dispatch_policy: frontier.DispatchPolicy | None = None  # None: no frontier, every queue popped plainly
    inbox_keys: frozenset[str] = frozenset()  # the queues whose jobs wait per host in the frontier

    def __init__(self, name: str = "default", connection: Redis | None = None, *args, serializer=None, **kwargs):
        super().__init__(name, connection, *args, serializer=serializer or JSONSerializer, **kwargs)

    @classmethod
    def lpop(cls, queue_keys: list[str], timeout: int | None, connection: Redis):
        """Never sleeps while a queue has a job; when all are empty, polls soon (a job enqueued
        just after is picked up within ~10 ms under steady load), then every poll_seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = DEQUEUE_FIRST_POLL
        while True:
            queue_key, found = cls._pop_once(queue_keys, connection)
            if queue_key is not None:
                return queue_key, found
            if deadline is None and found < 0:
                return None  # burst mode: nothing waits, not even for a host's turn
            if deadline is not None and time.monotonic() >= deadline:
                raise DequeueTimeout(timeout, queue_keys)
            # Wake for the next host's turn on time; a job enqueued meanwhile waits one poll.
            until_turn = found if found >= 0 else math.inf
            time.sleep(max(0.001, min(pause, cls.poll_seconds, until_turn)))
            pause *= 2

    @classmethod
    def _pop_once(cls, queue_keys: list[str], connection: Redis) -> tuple[str | None, str | float]:
        """(queue key, job id) of a claimed job, else (None, seconds until a host's turn, -1: none)."""
        claim_deadline = time.time() + cls.claim_seconds
        if cls.dispatch_policy is None:
            script = connection.register_script(CLAIMING_POP)
            result = script(keys=[JOB_CLAIMS, *queue_keys], args=[claim_deadline, JOB_CLAIM], client=connection)
            return (result[0], result[1]) if result else (None, -1.0)
        plain = [key for key in queue_keys if key not in cls.inbox_keys]
        inboxes = [key for key in queue_keys if key in cls.inbox_keys]
        return frontier.dispatch(connection, cls.dispatch_policy, JOB_CLAIMS, JOB_CLAIM, claim_deadline, plain,
                                 inboxes)

    @classmethod
    def lmove(cls, connection: Redis, queue_key: str, timeout: int | None):
        return cls.lpop([queue_key], timeout, connection)

    def acquire_maintenance_lock(self) -> bool:
        return bool(self.connection.set(self.registry_cleaning_key, 1, nx=True, ex=CLEANING_LOCK_SECONDS))


def sweep_claims(connection: Redis, at: float | None = None) -> int:
    """Put back at the head of their queue the jobs claimed but not started in time."""
    take_back = connection.register_script(frontier.TAKE_BACK)
    requeued = 0
    for raw_id in connection.zrangebyscore(JOB_CLAIMS, 0, time.time() if at is None else at):
        job_id = raw_id.decode()
        if take_back(keys=[JOB_CLAIMS, claim_key(job_id), Job.key_for(job_id)], args=[job_id], client=connection):
            requeued += 1
            log.warning("job %s was claimed but not started within %s s: back on its queue", job_id, CLAIM_SECONDS)
    return requeued


def watch_claim(pipe: Pipeline, job_id: str) -> None:
    """Start a transaction on the job's claim (WATCH); ClaimLost when it was taken back already."""
    key = claim_key(job_id)
    pipe.watch(key)
    if not pipe.exists(key):
        raise ClaimLost(job_id)


def drop_claim(pipe: Pipeline, job_id: str) -> None:
    """Queue the end of the job's claim on pipe (MULTI): it is being started."""
    pipe.delete(claim_key(job_id))
    pipe.zrem(JOB_CLAIMS, job_id)
