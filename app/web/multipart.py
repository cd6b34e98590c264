"""Multipart bodies split at their boundary by a byte search, not a per-request regex.

Werkzeug's multipart decoder compiles two regular expressions from each request's own
boundary (clients choose a fresh one for every request, so Python's cache of compiled
patterns never helps) and scans the body with them byte by byte, since they start with
a choice of line breaks. For a 20 KB photograph that is most of the parsing time.

``DelimiterSearch`` finds the same matches: ``bytes.find`` for ``--`` and the boundary,
then the line break before it and one fixed pattern for what follows it. A body that holds
many delimiters that end no part (crafted, or a file of dashes) is searched by Werkzeug's
own pattern once they pass ``MAX_NEAR_MISSES``, so it costs no more than Werkzeug's parser.
``tests/web/test_multipart.py`` compares it with Werkzeug's own patterns at every
position of many random buffers, and whole bodies parsed both ways.
"""

from __future__ import annotations

import re
from typing import Protocol

from werkzeug import formparser
from werkzeug.sansio.multipart import MultipartDecoder

# What follows a delimiter, as Werkzeug's patterns have it: the closing ``--`` with any
# horizontal space and an optional line break, or horizontal space and a line break.
_AFTER_DELIMITER = re.compile(rb"--[^\S\n\r]*(?:\r\n|\n|\r)?|[^\S\n\r]*(?:\r\n|\n|\r)")
_LINE_BREAK_BYTES = (ord("\n"), ord("\r"))
# How many delimiters that end no part a body may hold before Werkzeug's pattern takes over
# its search: a photograph holds none; thousands in a crafted body would cost a turn of the
# loop each, ten times the pattern's time (docs/decisions.md).
MAX_NEAR_MISSES = 16


class Found(Protocol):
    """What the decoder reads of a match: ``re.Match`` and ``DelimiterMatch`` both have it."""

    def start(self) -> int: ...

    def end(self) -> int: ...

    def group(self, index: int) -> bytes: ...


class DelimiterMatch:
    """The part of ``re.Match`` the decoder reads: ``start()``, ``end()`` and ``group(1)``."""

    __slots__ = ("_after", "_end", "_start")

    def __init__(self, start: int, end: int, after: bytes) -> None:
        self._start, self._end, self._after = start, end, after

    def start(self) -> int:
        return self._start

    def end(self) -> int:
        return self._end

    def group(self, index: int) -> bytes:
        if index != 1:
            raise IndexError(f"no group {index}")
        return self._after


class DelimiterSearch:
    """``search`` as Werkzeug's ``preamble_re`` (``line_break_optional``) or
    ``boundary_re`` give it: the leftmost line break, ``--``, the boundary and its ending."""

    def __init__(
        self, boundary: bytes, line_break_optional: bool, max_near_misses: int = MAX_NEAR_MISSES
    ) -> None:
        self.boundary = boundary
        self.delimiter = b"--" + boundary
        self.line_break_optional = line_break_optional
        self.max_near_misses = max_near_misses
        self.near_misses = 0
        self.pattern: re.Pattern[bytes] | None = None  # Werkzeug's, once the misses pass the limit

    def search(self, buffer: bytes | bytearray, pos: int = 0) -> Found | None:
        if self.pattern is not None:
            return self.pattern.search(buffer, pos)
        at = pos
        # Delimiters in order: one starts with "-", so no later one has a match further left.
        while (found := buffer.find(self.delimiter, at)) != -1:
            start = self._line_start(buffer, found, pos)
            if start is not None:
                after = _AFTER_DELIMITER.match(buffer, found + len(self.delimiter))
                if after is not None:
                    return DelimiterMatch(start, after.end(), after.group())
            self.near_misses += 1
            if self.near_misses > self.max_near_misses:
                self.pattern = werkzeug_pattern(self.boundary, self.line_break_optional)
                return self.pattern.search(buffer, pos)
            at = found + 1
        return None

    def _line_start(self, buffer: bytes | bytearray, found: int, pos: int) -> int | None:
        """Where the match of a delimiter at ``found`` starts: its line break, the longest
        first, not before ``pos``."""
        if found - 2 >= pos and buffer[found - 2 : found] == b"\r\n":
            return found - 2
        if found - 1 >= pos and buffer[found - 1] in _LINE_BREAK_BYTES:
            return found - 1
        return found if self.line_break_optional else None


def werkzeug_pattern(boundary: bytes, line_break_optional: bool) -> re.Pattern[bytes]:
    """Werkzeug's own pattern for ``boundary`` (``preamble_re`` or ``boundary_re``)."""
    decoder = MultipartDecoder(boundary)
    return decoder.preamble_re if line_break_optional else decoder.boundary_re


class BoundarySearchDecoder(MultipartDecoder):
    """Werkzeug's decoder with ``DelimiterSearch`` in place of its two patterns."""

    def __init__(
        self,
        boundary: bytes,
        max_form_memory_size: int | None = None,
        *,
        max_parts: int | None = None,
    ) -> None:
        # Werkzeug's own set-up, with the empty boundary, whose patterns are compiled once.
        super().__init__(b"", max_form_memory_size, max_parts=max_parts)
        self.boundary = boundary
        self.preamble_re = DelimiterSearch(boundary, line_break_optional=True)  # type: ignore[assignment]
        self.boundary_re = DelimiterSearch(boundary, line_break_optional=False)  # type: ignore[assignment]


def use_boundary_search() -> None:
    """Make Werkzeug's form parser, which names its decoder class at module level, decode
    with ``BoundarySearchDecoder`` in this process."""
    formparser.MultipartDecoder = BoundarySearchDecoder  # type: ignore[attr-defined]
