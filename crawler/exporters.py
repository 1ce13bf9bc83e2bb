"""Feed exporters: items to ``.jsonl``, ``.json`` or ``.csv`` files, exactly once, or to stdout.

Items reach a feed only after they are committed to the state, and a feed's (last item, byte
offset) checkpoint is saved after the file is synced. On resume the file is cut back to its
checkpoint and the items after it are written again, so a kill at any moment loses no item and
writes none twice. A file the state has never written is appended to (``-o``) or started anew
(``-O``). Standard output (``-o -``) cannot be cut back: there an item may come twice on resume.

Feed files are created readable by their owner only (0600), and a feed path that is a symbolic
link is refused: a crawl never writes through a link someone else may have planted.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import errno
import io
import os
import sys
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from crawler import jsondata
from crawler.errors import ConfigError, FeedError

STDOUT = Path("-")


def feed_key(path: Path) -> str:
    """The name a feed's checkpoint is kept under in the state: its absolute path, so that
    ``-o a.jsonl`` and ``-o $PWD/a.jsonl`` are one feed."""
    return "-" if path == STDOUT else str(path.resolve())


"""The feed path that means standard output (JSON lines), as in ``crawler run NAME -o -``."""


class FeedExporter:
    """Appends items to a file. Subclasses say how items are framed."""

    suffix = ""

    def __init__(
        self, path: Path, *, escape_formulas: bool = True, fields: list[str] | None = None
    ) -> None:
        self.path = path
        self.escape_formulas = escape_formulas
        self.fields = fields
        """The fields written, in order (``feed_fields``); None: every field of each item."""
        self.last_item = 0
        self.count = 0
        self._file: BinaryIO | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} last_item={self.last_item}>"

    def open(self, last_item: int, offset: int | None) -> None:
        """Open for appending after the checkpoint; a missing or shorter file starts over.
        ``offset=None`` appends after whatever the file holds (a feed the state never wrote),
        with the items after ``last_item``."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open_private(self.path)
            size = self._file.seek(0, os.SEEK_END)
        except OSError as exc:
            raise ConfigError(f"cannot write feed {self.path}: {exc.strerror}") from None
        if offset is None:
            offset = self._end(size)
        elif size < offset:  # the file was cut or replaced: it gets every item again
            last_item, offset = 0, 0
        self.file.truncate(offset)
        self.file.seek(offset)
        self.last_item = last_item
        self._start(offset)

    def resumes_after(self, last_item: int, offset: int) -> int:
        """The item ``open(last_item, offset)`` would resume after, read before the file is
        touched: ``last_item``, or 0 when the file is shorter than ``offset`` (cut or replaced,
        it would get every item again)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        except OSError:
            return last_item  # open() says what is wrong with the path
        return last_item if size >= offset else 0

    def _end(self, size: int) -> int:
        """Where to append to a file of ``size`` bytes this crawl did not write: after its last
        complete line."""
        if size:
            self.file.seek(size - 1)
            if self.file.read(1) != b"\n":
                self._refuse("its last line is incomplete")
        return size

    def _refuse(self, why: str) -> NoReturn:
        self.file.close()  # as it was: no closing bracket written
        self._file = None
        raise ConfigError(f"cannot append to feed {self.path}: {why}; -O {self.path} overwrites it")

    @property
    def file(self) -> BinaryIO:
        if self._file is None:
            raise RuntimeError("feed is not open")
        return self._file

    def _start(self, offset: int) -> None:
        """Write whatever a new file begins with."""

    def _frame(self, data: bytes) -> bytes:
        raise NotImplementedError

    def _selected(self, data: bytes) -> bytes:
        """The item with only ``fields``, in their order (a field it lacks is left out)."""
        if self.fields is None:
            return data
        item: dict[str, Any] = jsondata.loads(data)
        return jsondata.dumps({name: item[name] for name in self.fields if name in item})

    def write(self, items: list[tuple[int, bytes]]) -> None:
        chunks = [self._frame(data) for item_id, data in items if item_id > self.last_item]
        if chunks:
            try:
                self.file.write(b"".join(chunks))
            except OSError as exc:
                self._failed(exc)
            self.count += len(chunks)
            self.last_item = items[-1][0]

    async def sync(self) -> tuple[int, int]:
        """Make what was written durable; returns the checkpoint to save."""
        try:
            self.file.flush()
            await asyncio.to_thread(os.fsync, self.file.fileno())
        except OSError as exc:
            self._failed(exc)
        return self.last_item, self.file.tell()

    def _failed(self, exc: OSError) -> NoReturn:
        # Not checkpointed: a resume cuts the file back and writes these items again.
        raise FeedError(f"cannot write feed {self.path}: {exc.strerror}") from None

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
        return self._selected(data) + b"\n"


class JsonExporter(FeedExporter):
    """A JSON array; the closing bracket is written on close and cut off on resume."""

    suffix = ".json"

    def _start(self, offset: int) -> None:
        if offset == 0:
            self.file.write(b"[\n")
            self._first = True
            return
        # An item follows a comma unless the array holds none yet: "[" is all there is
        # before the offset, whatever the spacing (a file this crawl did not write: "[1]").
        self.file.seek(max(0, offset - 64))
        self._first = self.file.read(offset - max(0, offset - 64)).rstrip().endswith(b"[")
        self.file.seek(offset)

    def _frame(self, data: bytes) -> bytes:
        data = self._selected(data)
        if self._first:
            self._first = False
            return data
        return b",\n" + data

    def _end(self, size: int) -> int:
        """Before the closing bracket of the array the file holds (and the blanks before it)."""
        if size == 0:
            return 0
        start = max(0, size - 4096)
        self.file.seek(start)
        tail = self.file.read().rstrip()
        if not tail.endswith(b"]"):
            self._refuse("it does not end with a JSON array's closing ]")
        return start + len(tail[:-1].rstrip())

    def _finish(self) -> None:
        self.file.write(b"\n]\n")


class CsvExporter(FeedExporter):
    """CSV with a header of ``fields`` (``feed_fields``) or else the first item's fields; nested
    values are written as JSON. A file that has a header keeps it: resumed or appended to, its
    columns must be ``fields`` when those are set.

    Rows end in CRLF (RFC 4180), and a value holding a CR or LF is quoted. A text cell that a
    spreadsheet would run as a formula (it starts with ``= + - @``, a tab or a CR) gets a leading
    ``'`` (OWASP's advice against CSV injection), unless ``escape_formulas`` is off.
    """

    suffix = ".csv"

    def _start(self, offset: int) -> None:
        self._header_due = True
        if offset:
            self.file.seek(0)
            header = self.file.readline().decode("utf-8", "replace")
            self.file.seek(offset)
            columns = next(csv.reader([header]), None)
            if self.fields is not None and columns != self.fields:
                self._refuse(f"its columns are {','.join(columns or [])}, not feed_fields")
            self.fields, self._header_due = columns, False

    def _frame(self, data: bytes) -> bytes:
        item: dict[str, Any] = jsondata.loads(data)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        if self.fields is None:
            self.fields = list(item)
        if self._header_due:
            self._header_due = False
            writer.writerow(self.fields)  # read back on resume
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


class StdoutExporter(JsonLinesExporter):
    """JSON lines on standard output, each batch flushed as it is committed. Its checkpoint is
    the last item flushed: a pipe cannot be cut back, so after a kill the items between that
    flush and the checkpoint's commit come again on resume (at least once, not exactly once)."""

    def __init__(self, *, fields: list[str] | None = None) -> None:
        super().__init__(STDOUT, fields=fields)

    def resumes_after(self, last_item: int, offset: int) -> int:
        return last_item

    def open(self, last_item: int, offset: int | None) -> None:
        self._file = sys.stdout.buffer
        self.last_item = last_item

    async def sync(self) -> tuple[int, int]:
        try:
            self.file.flush()
        except OSError as exc:
            self._failed(exc)
        return self.last_item, 0

    def _failed(self, exc: OSError) -> NoReturn:
        self._file = None
        if not isinstance(exc, BrokenPipeError):
            raise FeedError(f"cannot write items to stdout: {exc.strerror}") from None
        # Python flushes stdout again at exit: point it at /dev/null so that it stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        raise FeedError("-o -: stdout was closed by its reader; the crawl stopped")

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(BrokenPipeError):
                self._file.flush()
            self._file = None


EXPORTERS: dict[str, type[FeedExporter]] = {
    cls.suffix: cls for cls in (JsonLinesExporter, JsonExporter, CsvExporter)
}
EXPORTERS[".jl"] = JsonLinesExporter  # Scrapy's spelling of JSON lines


def exporter_for(
    path: Path, *, escape_formulas: bool = True, fields: list[str] | None = None
) -> FeedExporter:
    """The exporter for a feed file, chosen by its extension; ``STDOUT`` writes JSON lines."""
    if path == STDOUT:
        return StdoutExporter(fields=fields)
    cls = EXPORTERS.get(path.suffix.lower())
    if cls is None:
        known = ", ".join(sorted(EXPORTERS))
        raise ConfigError(f"cannot export to {path}: the file name must end in one of {known}")
    return cls(path, escape_formulas=escape_formulas, fields=fields)
