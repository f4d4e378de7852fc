"""Fetching for jobs, in layers that depend one way (each on those below it):

- fetcher.py: Fetcher, what jobs call: a page (fetch) or a callback (post), under one deadline
- politeness.py: a job's turn on its host, slots and spacing per hop, adaptive delays
- robots.py: robots.txt verdicts per origin, read through a reader handed in, cached in Redis
- transport.py: the low-level safe GET: one guard approval per hop, redirects, body cap
- failures.py: network exceptions, statuses and content types as the project's errors
- pinning.py: connections pinned to the approved address; the deadline watchdog
"""
from jobs.fetch.fetcher import Fetcher
from jobs.fetch.politeness import Politeness, dispatch_policy
from jobs.fetch.transport import Page

__all__ = ["Fetcher", "Page", "Politeness", "dispatch_policy"]
