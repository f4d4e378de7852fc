"""A Goodreads description as plain text: its markup read line by line, and the librarian's note
that opens some descriptions taken apart.

- element_text(element), html_text(html): <br> ends a line, block elements end a paragraph,
  source line breaks are only spaces; script, style, template, noscript and button show no
  text, nor do comments. html_text reads markup held in the page's data (Apollo's
  Book.description) from a small tree of its own.
- split_librarian_note(text): Goodreads' librarians put a note about the edition record before
  some descriptions ("Alternate cover edition of ASIN B004XISI4A", "Also published as: ..."),
  on its own line or in a leading <b>/<i>. It is not the book's blurb: a leading line that
  opens with one of these phrasings goes to librarian_note. The same words further down are
  the blurb's own and stay.

Pure functions; the walks are linear in the description's size (it is one element of a page
already cut to size).
"""
from __future__ import annotations

import re

from parsers.tree import ENTER, LEAVE, TEXT, Element, Walk, is_tag, snippet_body

# How a librarian's note opens (see the module docstring).
LIBRARIAN_NOTE_OPENINGS = (
    r"librarian[’'`]?s?[’']?\s*note\b",  # Librarian's note: ...
    r"note\s*:",  # Note: ...
    r"(?:this\s+is\s+)?(?:an?\s+)?alternat(?:e|ive)\s+(?:cover\s+)?(?:edition|cover)\b",
    r"see\s+(?:the\s+|an?\s+)?alternat(?:e|ive)\s+(?:cover\s+)?edition",  # See alternate cover edition here
    r"(?-i:ACE)\s*(?:of|for|[:#-])",  # the librarians' abbreviation; "Ace" the word is not one
    r"(?:also|previously|formerly)\s+(?:published\s+(?:as|under)|released\s+as|titled|known\s+as)\b",
    r"(?:[\w-]+\s+){0,4}edition\s+(?:of|for)\s+(?:isbn|asin)\b",  # (This is a) Kindle edition of ASIN ...
    r"edition\s+of\b",
)
LIBRARIAN_NOTE = re.compile(r"^[\W_]*(?:" + "|".join(LIBRARIAN_NOTE_OPENINGS) + ")", re.I)
NOTE_MAX_CHARS = 300  # a note is a line or two; a longer opening paragraph is the blurb itself
NOTE_EMPHASIS_TAGS = ("b", "i", "em", "strong")

# Description HTML -> text: which tags end a line or a paragraph.
BLOCK_TAGS = ("p", "div", "li", "ul", "ol", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "table", "tr")
DROPPED_TAGS = ("script", "style", "template", "noscript", "button")
INLINE_SPACE = re.compile(r"[^\S\n]+")
TEXT_WHITESPACE = re.compile(r"\s+")
EXTRA_BLANK_LINES = re.compile(r"\n{3,}")


def split_librarian_note(text: str | None) -> tuple[str | None, str | None]:
    """(description, librarian_note): the leading note lines, if any, taken off the text."""
    lines = text.split("\n") if text else []
    count = _note_line_count(lines)
    if not count:
        return text, None
    return tidy_lines("\n".join(lines[count:])), tidy_lines("\n".join(lines[:count]))


def _note_line_count(lines: list[str]) -> int:
    """How many leading lines are a librarian's note: lines that open with a note phrasing,
    blank lines between them, and the line after one ending in ":" ("Also published as:")."""
    count, continued = 0, False
    for index, line in enumerate(lines):
        if not line:
            continue
        if not (continued or is_note_line(line)):
            break
        count, continued = index + 1, line.endswith(":")
    return count


def is_note_line(line: str) -> bool:
    return len(line) <= NOTE_MAX_CHARS and LIBRARIAN_NOTE.match(line) is not None


def element_text(element: Element | None) -> str | None:
    """The description markup of element as plain text (None for no element or no text)."""
    return _description_text(element) if element is not None else None


def html_text(html: str | None) -> str | None:
    """Description HTML (Apollo's) -> plain text, read from a small tree of its own."""
    if not html:
        return None
    body = snippet_body(html)
    return _description_text(body) if body is not None else None


def _description_text(root: Element) -> str | None:
    """Description markup -> plain text: <br> ends a line, block elements end a paragraph,
    source line breaks are only spaces; script, style, template, noscript and button show no
    text, nor do comments. A leading librarian's note ends its line (_note_ends_its_line)."""
    if root.tag in DROPPED_TAGS:
        return None
    lead = _leading_emphasis(root)
    lead = lead if lead is not None and _note_ends_its_line(lead) else None
    pieces: list[str] = []
    walk = Walk(root)
    for step, node in walk:
        if step == TEXT:
            pieces.append(TEXT_WHITESPACE.sub(" ", node))
        elif step == LEAVE:
            pieces.append("\n" if node is lead else "\n\n" if node.tag in BLOCK_TAGS else "")
        elif is_tag(node):
            if node.tag in DROPPED_TAGS:
                walk.skip()
            pieces.append("\n\n" if node.tag in BLOCK_TAGS else "\n" if node.tag == "br" else "")
    return tidy_lines("".join(pieces))


def _note_ends_its_line(lead: Element) -> bool:
    """A librarian's note in a leading <b>/<i> may run on into the blurb on the same line
    ("<i>Alternate cover edition of ISBN ...</i> The war is over."): its line ends after it.
    A note ending in ":" ("<b>Also published as:</b> Title") goes on with its line."""
    text = "".join(_shown_runs(lead)).strip()
    return bool(text) and not text.endswith(":") and is_note_line(text)


def _shown_runs(element: Element) -> list[str]:
    """The description text inside element, whitespace runs as single spaces."""
    runs = []
    walk = Walk(element)
    for step, node in walk:
        if step == TEXT:
            runs.append(TEXT_WHITESPACE.sub(" ", node))
        elif step == ENTER and is_tag(node) and node.tag in DROPPED_TAGS:
            walk.skip()
    return runs


def _leading_emphasis(root: Element) -> Element | None:
    """The <b>/<i>/<em>/<strong> that opens the text (before any other text), if one does."""
    if root.tag in NOTE_EMPHASIS_TAGS:
        return root
    walk = Walk(root)
    for step, node in walk:
        if step == TEXT and node.strip():
            return None
        if step == ENTER and is_tag(node):
            if node.tag in NOTE_EMPHASIS_TAGS:
                return node
            if node.tag in DROPPED_TAGS:
                walk.skip()
    return None


def tidy_lines(text: str) -> str | None:
    """Spaces collapsed and trimmed per line, at most one blank line between paragraphs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [INLINE_SPACE.sub(" ", line).strip() for line in text.split("\n")]
    return EXTRA_BLANK_LINES.sub("\n\n", "\n".join(lines)).strip() or None
