"""Safe fetching for jobs: a page (every hop approved once by the guard, gated by politeness,
size and time bounded) and a callback's POST.

fetch(url) gives the whole fetch one wall-clock deadline (jobs.fetch.pinning.Deadline) and
follows redirects on the Transport, entering Politeness.hop() around each hop. A hop whose
origin's robots.txt is not cached reads it through _read_robots: the same Transport, each
of its hops gated by politeness too, but with no robots.txt reader of its own, so reading
rules never re-enters fetch() and never asks for rules again. Every network exception,
wherever it happened, leaves as the project error jobs.fetch.failures says it is.
"""
from __future__ import annotations

import contextlib

from config import Settings
from guard import Target
from jobs.fetch.failures import check_status, fetch_errors, receiver_asks_again
from jobs.fetch.pinning import Deadline
from jobs.fetch.politeness import Politeness
from jobs.fetch.transport import Page, Transport


class Fetcher:
    """One per worker process: its Transport keeps keep-alive connections between jobs."""

    def __init__(self, settings: Settings, politeness: Politeness | None = None):
        self.settings = settings
        self.politeness = politeness  # per-host limits and robots.txt for fetch(); never for post()
        self.transport = Transport(settings)

    def fetch(self, url: str) -> Page:
        """The page at url, or a FetchError that says why not."""
        with Deadline(self.settings.fetch_deadline) as deadline, fetch_errors(deadline):
            return self.transport.follow(url, deadline, self._page_hop)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST body to url under the same guard and deadline; redirects are not followed.

        Returns the 2xx status; raises TransientFetchError (network, 429, 5xx) or FetchError.
        """
        with Deadline(self.settings.fetch_deadline) as deadline, fetch_errors(deadline):
            with self.transport.send(self.transport.approve(url), "POST", body, headers) as response:
                check_status(response, receiver_asks_again)
                return response.status_code

    def close(self) -> None:
        self.transport.close()

    def _page_hop(self, target: Target, deadline: Deadline) -> contextlib.AbstractContextManager[None]:
        if self.politeness is None:
            return contextlib.nullcontext()
        return self.politeness.hop(target, deadline, self._read_robots)

    def _read_robots(self, url: str, deadline: Deadline) -> Page:
        """A robots.txt within the page fetch's deadline, by the same guard, pinning and body cap;
        any status and content type come back for jobs.fetch.robots to judge."""
        with fetch_errors(deadline):
            return self.transport.follow(url, deadline, self._robots_hop, as_page=False)

    def _robots_hop(self, target: Target, deadline: Deadline) -> contextlib.AbstractContextManager[None]:
        return self.politeness.hop(target, deadline)  # only a politeness asks for robots.txt: it is set
