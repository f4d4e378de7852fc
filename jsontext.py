"""JSON text as the service writes it: UTF-8, non-ASCII text as is ("Bücher", not "B\\u00fccher").

One exception, and why it needs a home: a lone surrogate ("\\ud800"). A client may send one
in JSON, and the API echoes what it refuses ("rejected", error messages); Python keeps it in
a str, but UTF-8 cannot encode it (a 500 when the answer is encoded). JSON can carry it only
as a \\uXXXX escape, which is what ensure_ascii=True wrote: escape_lone_surrogates writes that
escape for them alone.
"""
from __future__ import annotations

import json


def escape_lone_surrogates(text: str) -> str:
    """text with each lone surrogate written as its JSON escape; JSON text stays valid JSON
    (outside strings json.dumps writes ASCII only, so every surrogate is inside a string)."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()  # \ud800: the JSON escape, too
    return text


def dumps(value: object, **kwargs: object) -> str:
    """json.dumps in the service's spelling: non-ASCII as is, lone surrogates escaped."""
    return escape_lone_surrogates(json.dumps(value, ensure_ascii=False, **kwargs))

