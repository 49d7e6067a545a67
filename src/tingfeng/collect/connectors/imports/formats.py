"""Files: finding, opening (gzip too) and recognising them; reading JSONL, JSON, CSV and XLSX.

Each reader yields (where, record) pairs, where a record is a dict or a `_Bad` saying why it
could not be read, so one broken line or row is one error and never stops the file.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import chain, islice
from pathlib import Path
from typing import IO, Any

from tingfeng.collect.charset import detect_encoding
from tingfeng.collect.connectors.imports.ced import _ced_problem
from tingfeng.collect.connectors.imports.config import ImportConfig
from tingfeng.collect.connectors.imports.mapping import Mapper, _Bad
from tingfeng.collect.connectors.imports.values import json_type
from tingfeng.collect.errors import ConfigError

_SAMPLE_BYTES = 64 * 1024
_HEADER_SCAN_ROWS = 20
# Larger than any real cell, yet a bound: csv's default of 128 KiB rejects long posts.
_CSV_FIELD_LIMIT = 64 * 1024 * 1024
_JSON_CHUNK = 1 << 20
# An array element still not complete after this many characters is broken JSON, not a big post.
_JSON_MAX_ENTRY = 64 << 20

_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook is one)"),
    (b"\xd0\xcf\x11\xe0", "an old Office file (.xls/.doc)"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"SQLite format 3", "an SQLite database"),
)


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """The file to read, or a ConfigError saying why it cannot be."""
    resolved = Path(path).expanduser()
    if not resolved.exists():
        where = "" if resolved.is_absolute() else f" (relative paths are read from {Path.cwd()})"
        raise ConfigError(f"The file {str(path)!r} does not exist{where}. Check the path.")
    if resolved.is_dir():
        raise ConfigError(f"{str(path)!r} is a folder; give the file to import inside it.")
    if not os.access(resolved, os.R_OK):
        raise ConfigError(f"The file {str(path)!r} cannot be read: check its permissions.")
    return resolved


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


@contextmanager
def open_binary(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes, decompressed when it is gzip (recognised by content, not name)."""
    if _is_gzip(path):
        with gzip.open(path, "rb") as handle:
            yield handle
    else:
        with path.open("rb") as handle:
            yield handle


def _head(path: Path, size: int = _SAMPLE_BYTES) -> bytes:
    try:
        with open_binary(path) as handle:
            return handle.read(size)
    except (OSError, EOFError, zlib.error) as exc:
        raise ConfigError(f"{path.name} cannot be read: {exc}. Is it a damaged .gz file?") from exc


def _what_binary(sample: bytes) -> str | None:
    """What a binary file looks like ("a PNG image"), or None when it may be text."""
    for magic, what in _MAGIC:
        if sample.startswith(magic):
            return what
    if b"\x00" in sample[:4096] and not sample.startswith(
        (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    ):
        return "a binary file"
    return None


def _first_char(sample: bytes) -> bytes:
    return sample.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]


def _strip_gz(name: str) -> str:
    return name[:-3] if name.lower().endswith(".gz") else name


def detect_format(path: Path, sample: bytes, config: ImportConfig | None = None) -> str:
    """The format of `path` from its extension, then its first bytes."""
    name = _strip_gz(path.name.lower())
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    if suffix in ("xls", "et"):
        raise ConfigError(
            f"{path.name} is an old-style Excel workbook; save it as .xlsx (or export CSV) first."
        )
    by_suffix = {
        "jsonl": "jsonl",
        "ndjson": "jsonl",
        "jsonlines": "jsonl",
        "json": "json",
        "csv": "csv",
        "tsv": "csv",
        "txt": "csv",
        "xlsx": "xlsx",
        "xlsm": "xlsx",
    }
    fmt = by_suffix.get(suffix)
    if fmt is None:
        if sample.startswith(b"PK\x03\x04"):
            fmt = "xlsx"
        elif _first_char(sample) in (b"{", b"["):
            fmt = "json"
        else:
            fmt = "csv"
    if fmt == "json" and _first_char(sample) != b"[":
        fmt = "jsonl"  # one object per line (or a single object) under a .json name
    # A CED file given without a mapping is recognised: `tingfeng ingest cascades.jsonl.gz` works.
    if fmt == "jsonl" and (config is None or (not config.mapping and not config.preset)):
        first_line = sample.split(b"\n", 1)[0]
        if b'"reposts"' in first_line:
            try:
                if _ced_problem(json.loads(first_line)) is None:
                    fmt = "ced"
            except ValueError:
                pass
    return fmt


def _choose_encoding(config: ImportConfig, sample: bytes) -> str:
    if config.encoding.lower() != "auto":
        return config.encoding
    return detect_encoding(sample)


def _text_stream(handle: IO[bytes], encoding: str) -> io.TextIOWrapper:
    # Undecodable bytes become U+FFFD and the row carrying them is reported, not the whole file.
    return io.TextIOWrapper(handle, encoding=encoding, errors="replace", newline="")


def _jsonl_records(
    handle: IO[bytes], encoding: str, skip: int = 0
) -> Iterator[tuple[str, dict[str, Any] | _Bad]]:
    """(where, object) per non-empty line, decoded one by one: one bad line is one error.

    The first `skip` records are passed over without decoding them (resuming a large file).
    """
    wide = codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))
    lines: Iterable[bytes | str] = _text_stream(handle, encoding) if wide else handle
    codec = "utf-8" if encoding == "utf-8-sig" else encoding
    for number, line in enumerate(lines, 1):
        where = f"line {number}"
        if isinstance(line, bytes):
            if number == 1 and line.startswith(codecs.BOM_UTF8):
                line = line[3:]
            if not line.strip():
                continue
            if skip:
                skip -= 1
                continue
            try:
                text = line.decode(codec)
            except UnicodeDecodeError as exc:
                yield where, _Bad(f"not valid {codec} text ({exc.reason}); set encoding")
                continue
        else:
            text = line.lstrip("\ufeff") if number == 1 else line
            if not text.strip():
                continue
            if skip:
                skip -= 1
                continue
        try:
            record = json.loads(text)
        except ValueError as exc:
            yield where, _Bad(f"invalid JSON: {exc}")
            continue
        if not isinstance(record, dict):
            yield where, _Bad(f"expected a JSON object, found a {json_type(record)}")
            continue
        yield where, record


def _json_array_records(
    handle: IO[bytes], encoding: str
) -> Iterator[tuple[str, dict[str, Any] | _Bad]]:
    """(where, object) per element of a top-level JSON array, read in chunks, never whole."""
    stream = _text_stream(handle, "utf-8-sig" if encoding == "utf-8" else encoding)
    decoder = json.JSONDecoder()
    buffer = stream.read(_JSON_CHUNK).lstrip("\ufeff")
    pos = 0
    eof = False
    number = 0

    def skip_space() -> None:
        nonlocal buffer, pos, eof
        while True:
            while pos < len(buffer) and buffer[pos] in " \t\r\n":
                pos += 1
            if pos < len(buffer) or eof:
                return
            more = stream.read(_JSON_CHUNK)
            eof = not more
            buffer, pos = buffer[pos:] + more, 0

    skip_space()
    if buffer[pos : pos + 1] != "[":
        raise ConfigError("The JSON file does not start with '[': expected an array of objects.")
    pos += 1
    while True:
        skip_space()
        if pos >= len(buffer):
            yield f"entry {number + 1}", _Bad("the file ends inside the JSON array (truncated?)")
            return
        if buffer[pos] == "]":
            return
        if number and buffer[pos] == ",":
            pos += 1
            skip_space()
        number += 1
        while True:
            try:
                record, end = decoder.raw_decode(buffer, pos)
                break
            except ValueError as exc:
                if eof:
                    # No way to find the next element after broken JSON: report and stop.
                    yield f"entry {number}", _Bad(f"invalid JSON: {exc}; the rest is skipped")
                    return
                if len(buffer) - pos > _JSON_MAX_ENTRY:
                    yield f"entry {number}", _Bad(f"invalid JSON: {exc}; the rest is skipped")
                    return
                more = stream.read(max(_JSON_CHUNK, len(buffer)))
                eof = not more
                buffer, pos = buffer[pos:] + more, 0
        pos = end
        if pos > _JSON_CHUNK:  # drop what was read so memory stays bounded
            buffer, pos = buffer[pos:], 0
        if isinstance(record, dict):
            yield f"entry {number}", record
        else:
            yield (
                f"entry {number}",
                _Bad(f"expected a JSON object, found a {json_type(record)}"),
            )


def _guess_delimiter(head: str, path: Path) -> str:
    """The delimiter used most in the first lines (a title line above the header has none)."""
    if _strip_gz(path.name.lower()).endswith(".tsv"):
        return "\t"
    lines = head.splitlines()[:_HEADER_SCAN_ROWS]
    counts = {d: sum(line.count(d) for line in lines) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _tabular_records(
    rows: Iterator[tuple[int, list[Any] | _Bad]], mapper: Mapper, what: str, unit: str
) -> Iterator[tuple[str, dict[str, Any] | _Bad]]:
    """Dicts keyed by the header (found among the first rows) for each non-empty data row."""
    head = list(islice(rows, _HEADER_SCAN_ROWS))
    readable = [(n, cells) for n, cells in head if not isinstance(cells, _Bad)]
    if not readable:
        raise ConfigError(f"{what} is empty: it has no header row and no data.")
    header_at, header = mapper.choose_header(readable, what)
    header_number = readable[header_at][0]
    columns = [(i, name) for i, name in enumerate(header) if name]
    for number, cells in chain((r for r in head if r[0] > header_number), rows):
        if isinstance(cells, _Bad):
            yield f"{unit} {number}", cells
        elif any(c not in (None, "") for c in cells):
            yield f"{unit} {number}", {n: cells[i] if i < len(cells) else None for i, n in columns}


def _csv_rows(stream: io.TextIOWrapper, delimiter: str) -> Iterator[tuple[int, list[Any] | _Bad]]:
    """(first line number, cells) per CSV record; a broken record yields (line, _Bad)."""
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.reader(stream, delimiter=delimiter)
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, _Bad(f"unreadable CSV row: {exc}")
            continue
        yield (
            start,
            [c.lstrip("\ufeff") if i == 0 and start == 1 else c for i, c in enumerate(cells)],
        )


@contextmanager
def _open_workbook(path: Path, sheet: str | None) -> Iterator[Any]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, KeyError or its own errors
        raise ConfigError(
            f"{path.name} is not a readable .xlsx workbook ({type(exc).__name__}: {exc}). "
            "Save it from Excel or WPS as .xlsx, or export it as CSV."
        ) from exc
    try:
        if sheet is None:
            worksheet = book.worksheets[0]
        elif sheet in book.sheetnames:
            worksheet = book[sheet]
        else:
            raise ConfigError(
                f"{path.name} has no sheet {sheet!r}; sheets: {', '.join(book.sheetnames)}."
            )
        # Some tools write a wrong <dimension>; without this, read-only mode may stop early.
        worksheet.reset_dimensions()
        yield worksheet
    finally:
        book.close()
