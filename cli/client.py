"""The one place that speaks HTTP to the service: requests, JSON bodies and error answers.

Every failure leaves here as a ServiceError carrying the server's own code and message
(or Unreachable when no answer came), so callers never see a requests traceback.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import requests

TIMEOUT = (5, 60)  # connect, read: a POST of 500 URLs does a Redis round trip per URL
DEFAULT_CHUNK = 500  # the service's default MAX_URLS_PER_REQUEST
BATCHES_PAGE = 100  # batches per /batches page: the service's most
EXPORT_CHUNK = 64 * 1024  # bytes of an export written at once
ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


class ServiceError(Exception):
    """The service answered with an error: HTTP status and the code/message of its JSON body."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    def __str__(self) -> str:
        details = ", ".join(part for part in (self.code, self.status and f"HTTP {self.status}") if part)
        return f"{self.message} ({details})" if details else self.message


class Unreachable(ServiceError):
    """No HTTP answer at all: refused, timed out, DNS, TLS."""


@dataclass
class Submission:
    """What the POSTs of one submission answered, merged across chunks."""

    batch_ids: list[str] = field(default_factory=list)
    accepted: list[dict] = field(default_factory=list)  # each tagged with its batch_id
    rejected: list[dict] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)  # the URLs as given, in order: the answers list them per kind

    def add(self, answer: dict) -> None:
        batch_id = answer.get("batch_id")
        if batch_id:  # None when every URL of the chunk was rejected
            self.batch_ids.append(batch_id)
        self.accepted += [{**item, "batch_id": batch_id} for item in answer.get("accepted", [])]
        self.rejected += answer.get("rejected", [])


class ServiceClient:
    def __init__(self, base_url: str, token: str | None = None, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    # ---- endpoints ----------------------------------------------------------------------

    def submit(self, urls: list[str], refresh: bool = False, chunk_size: int = DEFAULT_CHUNK) -> Submission:
        """POST urls in chunks. The server's limit may be below ours: a 413 halves the chunk and retries it."""
        result, start = Submission(sent=list(urls)), 0
        while start < len(urls):
            chunk = urls[start:start + chunk_size]
            try:
                result.add(self.post_chunk(chunk, refresh))
            except ServiceError as exc:
                if exc.status != 413 or chunk_size == 1:
                    raise
                chunk_size = max(1, len(chunk) // 2)
                continue
            start += len(chunk)
        return result

    def post_chunk(self, urls: list[str], refresh: bool) -> dict:
        response = self._send("POST", "/parse", json={"urls": urls, "refresh": refresh})
        body = self._decode(response)
        if response.status_code == 400 and isinstance(body, dict) and "rejected" in body:
            return body  # nothing accepted: a normal answer in which every URL carries its reason
        return self._checked(response, body)

    def info(self, url: str) -> tuple[int, dict]:
        """(status, body) of GET /info: 200 a record, 202 in flight, 404 never submitted."""
        response = self._send("GET", "/info", params={"url": url})
        body = self._decode(response)
        if response.status_code in (202, 404):
            return response.status_code, body
        return response.status_code, self._checked(response, body)

    def batch(self, batch_id: str) -> dict:
        return self._get(f"/batches/{batch_id}")

    def export(self, extension: str, params: dict[str, str]) -> Iterator[bytes]:
        """GET /records.<extension> (jsonl or csv) with these filters, as the server streams it.
        An error answer raises before anything is yielded; a stream cut off midway raises too."""
        response = self._send("GET", f"/records.{extension}", params=params, stream=True)
        with response:
            if response.status_code >= 400:
                raise error_from(response, self._decode(response))
            try:
                yield from response.iter_content(EXPORT_CHUNK)
            except requests.RequestException as exc:
                raise Unreachable(f"the export from {self.base_url} stopped midway: {short_reason(exc)}") from None

    def cancel_job(self, job_id: str) -> tuple[int, dict]:
        """(status, body) of DELETE /jobs/<id>: 200 canceled, 404 unknown, 409 started or ended."""
        return self._answer("DELETE", f"/jobs/{quote(job_id, safe='')}", expected=(404, 409))

    def cancel_batch(self, batch_id: str) -> tuple[int, dict]:
        """(status, body) of POST /batches/<id>/cancel: 200 {canceled, not_canceled}, 404 unknown."""
        return self._answer("POST", f"/batches/{quote(batch_id, safe='')}/cancel", expected=(404,), json={})

    def delete_record(self, url: str) -> tuple[int, dict]:
        """(status, body) of DELETE /records?url=: 200 deleted, 404 no record."""
        return self._answer("DELETE", "/records", expected=(404,), params={"url": url})

    def batches(self, limit: int) -> Iterator[dict]:
        """The `limit` most recent batches, newest first, a page of at most BATCHES_PAGE at a time."""
        cursor, left = None, limit
        while left > 0:
            params = {"limit": min(left, BATCHES_PAGE), **({"cursor": cursor} if cursor else {})}
            page = self._get("/batches", params)
            yield from page["batches"][:left]
            left -= len(page["batches"])
            cursor = page["next_cursor"]
            if cursor is None:
                return

    # ---- plumbing -----------------------------------------------------------------------

    def _answer(self, method: str, path: str, expected: tuple[int, ...], **kwargs) -> tuple[int, dict]:
        """(status, body) when the answer is a success or one of the `expected` errors (the
        caller reports those per item); any other error raises ServiceError."""
        response = self._send(method, path, **kwargs)
        body = self._decode(response)
        if response.status_code in expected and isinstance(body, dict):
            return response.status_code, body
        return response.status_code, self._checked(response, body)

    def _get(self, path: str, params: dict | None = None) -> dict:
        response = self._send("GET", path, params=params)
        return self._checked(response, self._decode(response))

    def _send(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            return self.session.request(method, self.base_url + path, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise Unreachable(f"cannot reach the server at {self.base_url}: {short_reason(exc)}") from None

    @staticmethod
    def _decode(response: requests.Response) -> object:
        try:
            return response.json()
        except ValueError:
            return None  # an HTML error page from a proxy, or not the service at all

    @staticmethod
    def _checked(response: requests.Response, body: object) -> dict:
        if response.status_code >= 400:
            raise error_from(response, body)
        if not isinstance(body, dict):
            raise ServiceError(f"{response.url} did not answer JSON: is this the metaparse service?",
                               response.status_code)
        return body


def error_from(response: requests.Response, body: object) -> ServiceError:
    """The service's {"error": {"code", "message"}}, or the HTTP status line when there is none."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return ServiceError(str(error["message"]), response.status_code, error.get("code"))
    reason = response.reason or "error"
    return ServiceError(f"the server answered {response.status_code} {reason}", response.status_code)


def short_reason(exc: requests.RequestException) -> str:
    """'connection refused' rather than urllib3's nested repr of the whole retry chain."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    match = ERRNO_TEXT.search(str(exc))
    if match:
        return match.group(1).strip().lower()
    return type(exc).__name__
