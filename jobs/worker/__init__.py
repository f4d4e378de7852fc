"""The worker runtime: RQ workers that lose no job, run none twice at once, and know no job.

`python -m jobs.worker` (__main__.py) runs a pool of them with their scheduler; it is the
one place that knows the service's jobs, and hands the runtime what it needs of them (which
crash handler goes with which job function, the frontier's dispatch of page queues).
What each piece closes, in the order a job meets them:

1. Dequeue (claims.py): a job is popped and claimed in one atomic step, and a claim turns
   into a started execution (STARTED, in the started registry) in one transaction, or is
   taken back to its queue by any worker's maintenance: never in no list and no registry.
   The same transaction sets the job STARTED: RQ's StartedJobRegistry.cleanup ignores (and
   drops) entries of jobs that are not STARTED, so a worker killed before its horse said
   STARTED would otherwise lose the job too.
2. The lease (timings.py): a started execution counts as abandoned only after its job's
   timeout plus LEASE_GRACE, later than its executing process can still be running.
3. The executing process's end: RQ's death penalty, then a hard kill at timeout +
   HARD_KILL_GRACE: of the horse (base.py, fork mode) or of the worker itself (watchdog.py,
   killtimer.py: in-process mode, inprocess.py); a horse dies with its worker, a worker
   with its pool, a scheduler with its worker.
4. Recovery: the first maintenance pass after the lease retries (or fails) the job; a job
   whose last run died, with no retries left, gets its function's crash handler (crashes.py).
5. Workers replaced at once (pool.py): killed, worn or out of memory.

Saving once, whatever runs twice after a crash, is the job's own part (the page job's is
jobs/tasks.py, with storage.Storage.save_once).

Assumptions: Linux (PDEATHSIG, timer_create); a worker's process not frozen (SIGSTOP)
while its job runs; hosts' clocks within KILL_SLACK of each other; a registry-cleaning
pass (milliseconds) shorter than CLEANING_LOCK_SECONDS; Redis does not lose acknowledged
writes. The last one fails on a Redis crash with `appendfsync everysec` (up to ~1 s of
writes): afterwards a job may run again (at least once, never lost: see web/journal.py).
"""
