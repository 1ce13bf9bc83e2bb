"""Feed exporters: items to ``.jsonl``, ``.json`` or ``.csv`` files, exactly once.

Items reach a feed only after they are committed to the state, and a feed's (last item, byte
offset) checkpoint is saved after the file is synced. On resume the file is cut back to its
checkpoint and the items after it are written again, so a kill at any moment loses no item and
writes none twice.

Feed files are created readable by their owner only (0600), and a feed path that is a symbolic
link is refused: a crawl never writes through a link someone else may have planted.
"""

from __future__ import annotations

import asyncio
import csv
import errno
import io
import os
from pathlib import Path
from typing import Any, BinaryIO

from crawler import jsondata
from crawler.errors import ConfigError


class FeedExporter:
    """Appends items to a file. Subclasses say how items are framed."""

    suffix = ""

    def __init__(self, path: Path, *, escape_formulas: bool = True) -> None:
        self.path = path
        self.escape_formulas = escape_formulas
        self.last_item = 0
        self.count = 0
        self._file: BinaryIO | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} last_item={self.last_item}>"

    def open(self, last_item: int, offset: int) -> None:
        """Open for appending after the checkpoint; a missing or shorter file starts over. A
        checkpoint at offset 0 past item N (a recrawl's new feed) writes the items after N."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if offset and not (self.path.exists() and self.path.stat().st_size >= offset):
                last_item, offset = 0, 0
            self._file = open_private(self.path)
            self._file.truncate(offset)
            self._file.seek(offset)
        except OSError as exc:
            raise ConfigError(f"cannot write feed {self.path}: {exc.strerror}") from None
        self.last_item = last_item
        self._start(offset)

    @property
    def file(self) -> BinaryIO:
        if self._file is None:
            raise RuntimeError("feed is not open")
        return self._file

    def _start(self, offset: int) -> None:
        """Write whatever a new file begins with."""

    def _frame(self, data: bytes) -> bytes:
        raise NotImplementedError

    def write(self, items: list[tuple[int, bytes]]) -> None:
        chunks = [self._frame(data) for item_id, data in items if item_id > self.last_item]
        if chunks:
            self.file.write(b"".join(chunks))
            self.count += len(chunks)
            self.last_item = items[-1][0]

    async def sync(self) -> tuple[int, int]:
        """Make what was written durable; returns the checkpoint to save."""
        self.file.flush()
        await asyncio.to_thread(os.fsync, self.file.fileno())
        return self.last_item, self.file.tell()

    def _finish(self) -> None:
        """Write whatever a finished file ends with (not part of the checkpoint)."""

    def close(self) -> None:
        if self._file is not None:
            self._finish()
            self._file.close()
            self._file = None


def open_private(path: Path) -> BinaryIO:
    """Open ``path`` for reading and writing, creating it with mode 0600; never through a link."""
    if path.is_symlink():
        raise OSError(errno.ELOOP, f"{path} is a symbolic link; give the path of its target")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    return os.fdopen(fd, "r+b")


class JsonLinesExporter(FeedExporter):
    suffix = ".jsonl"

    def _frame(self, data: bytes) -> bytes:
        return data + b"\n"


class JsonExporter(FeedExporter):
    """A JSON array; the closing bracket is written on close and cut off on resume."""

    suffix = ".json"

    def _start(self, offset: int) -> None:
        self._first = offset <= 2
        if offset == 0:
            self.file.write(b"[\n")

    def _frame(self, data: bytes) -> bytes:
        if self._first:
            self._first = False
            return data
        return b",\n" + data

    def _finish(self) -> None:
        self.file.write(b"\n]\n")


class CsvExporter(FeedExporter):
    """CSV with a header from the first item's fields; nested values are written as JSON.

    Rows end in CRLF (RFC 4180), and a value holding a CR or LF is quoted. A text cell that a
    spreadsheet would run as a formula (it starts with ``= + - @``, a tab or a CR) gets a leading
    ``'`` (OWASP's advice against CSV injection), unless ``escape_formulas`` is off.
    """

    suffix = ".csv"

    def _start(self, offset: int) -> None:
        self.fields: list[str] | None = None
        if offset:
            self.file.seek(0)
            header = self.file.readline().decode("utf-8")
            self.file.seek(offset)
            self.fields = next(csv.reader([header]), None)

    def _frame(self, data: bytes) -> bytes:
        item: dict[str, Any] = jsondata.loads(data)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        if self.fields is None:
            self.fields = list(item)
            writer.writerow(self.fields)  # the spider's field names, read back on resume
        writer.writerow([self._text(_cell(item.get(name))) for name in self.fields])
        return out.getvalue().encode("utf-8")

    def _text(self, value: Any) -> Any:
        if self.escape_formulas and isinstance(value, str) and value.startswith(_FORMULA_STARTS):
            return "'" + value
        return value


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return jsondata.dumps(value).decode()
    return value


EXPORTERS: dict[str, type[FeedExporter]] = {
    cls.suffix: cls for cls in (JsonLinesExporter, JsonExporter, CsvExporter)
}
EXPORTERS[".jl"] = JsonLinesExporter  # Scrapy's spelling of JSON lines


def exporter_for(path: Path, *, escape_formulas: bool = True) -> FeedExporter:
    """The exporter for a feed file, chosen by its extension."""
    cls = EXPORTERS.get(path.suffix.lower())
    if cls is None:
        known = ", ".join(sorted(EXPORTERS))
        raise ConfigError(f"cannot export to {path}: the file name must end in one of {known}")
    return cls(path, escape_formulas=escape_formulas)
