"""Reading quoted prompts the way a model would: find the real delimiters.

`tools.quoting` puts untrusted text between ``<kind-NONCE>`` and ``</kind-NONCE>``. A
model reading the prompt learns the nonce from the first opening tag (or the notice
that names it) and treats everything up to the next closing tag *with that nonce* as
data. These helpers do the same, so tests can check where quoted text really ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Block:
    start: int
    """Offset of the opening tag."""
    end: int
    """Offset just past the closing tag."""
    body: str
    """The quoted text, without the newline after the opening tag and before the closing one."""


def nonce_tag(text: str, kind: str) -> str:
    """The ``kind-NONCE`` of the first opening tag of `kind` in `text`."""
    found = re.search(rf"<({re.escape(kind)}-[0-9a-f]{{16}})>", text)
    assert found, f"no <{kind}-NONCE> tag in the text"
    return found.group(1)


def blocks(text: str, kind: str = "untrusted-data", tag: str | None = None) -> list[Block]:
    """The quoted blocks in `text`, in order, read as a model would: from the top, the
    next line that is an opening tag ``<kind-NONCE>`` (of `tag`, when given) opens a
    block, and the first ``</kind-NONCE>`` with the *same* nonce after it closes it;
    reading resumes after the close, so tag-like lines inside a block are data. A tag
    named inside a sentence (a notice) does not open a block."""
    pattern = re.escape(tag) if tag else re.escape(kind) + "-[0-9a-f]{16}"
    opening = re.compile(rf"(?m)^<({pattern})>\n")
    found: list[Block] = []
    position = 0
    while True:
        match = opening.search(text, position)
        if match is None:
            return found
        closing = f"\n</{match.group(1)}>"
        close = text.find(closing, match.end() - 1)
        assert close != -1, f"block at {match.start()} is never closed"
        found.append(Block(start=match.start(), end=close + len(closing), body=text[match.end() : close]))
        position = close + len(closing)


def outside(text: str, found: list[Block]) -> str:
    """The text outside the blocks (what the prompt's author wrote)."""
    parts, position = [], 0
    for block in found:
        parts.append(text[position : block.start])
        position = block.end
    parts.append(text[position:])
    return "".join(parts)


_ANY_OPENING = re.compile(r"<([a-z][a-z0-9-]*-[0-9a-f]{16})>")


def unquoted(text: str) -> str:
    """What is left of `text` once every quoted region is cut out, reading leniently:
    from the top, any ``<kind-NONCE>`` (a block or an inline quote, or a notice naming
    the tags) starts a region that ends at the first ``</kind-NONCE>`` with the same
    nonce. A payload that escaped its quoting would show up in what is left."""
    parts, position = [], 0
    while True:
        match = _ANY_OPENING.search(text, position)
        if match is None:
            parts.append(text[position:])
            return "".join(parts)
        closing = f"</{match.group(1)}>"
        close = text.find(closing, match.end())
        assert close != -1, f"<{match.group(1)}> at {match.start()} is never closed"
        parts.append(text[position : match.start()])
        position = close + len(closing)
