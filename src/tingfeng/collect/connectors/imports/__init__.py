"""Importing files: JSONL, JSON arrays, CSV, XLSX and the CED Weibo cascades.

A file is read as a stream of records (a JSON line, a CSV or sheet row, a CED post or repost)
and each record becomes one `RawItem`, or one `ItemError` when it cannot be read, so a bad row
never stops an import. A `mapping` says which column (or dotted JSON path) feeds which item
field; presets in `collect/presets/import_*.json` hold ready mappings for common exports
(MediaCrawler, 12345 hotline work orders).

The same code serves the `import` source kind (the connector below) and the
`tingfeng ingest FILE` command (`read_items`). The connector keeps in `state["offset"]` how
many records it has read, so the next run starts after them (and picks up lines appended since);
resuming skips records without mapping them (CED: whole cascades at once). Re-reading is safe
anyway: the store ignores items it already holds.

Times: naive date-times stay naive (the pipeline reads them in the source's time zone);
numeric epochs (seconds, milliseconds or microseconds) become aware UTC times.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from tingfeng.collect.connectors.base import CollectContext, Connector, register
from tingfeng.collect.connectors.imports.ced import (
    CHINA_TZ,
    EMPTY_REPOST_TEXT,
    _ced_items,
    _ced_problem,
    ced_local_time,
    ced_repost_item,
    ced_repost_time,
    ced_source_item,
    ced_source_time,
)
from tingfeng.collect.connectors.imports.config import (
    DEFAULT_MAPPING,
    FIELDS,
    PRESET_DIR,
    Format,
    ImportConfig,
    MappingValue,
    Preset,
    Variant,
    _variants,
    load_preset,
    preset_names,
)
from tingfeng.collect.connectors.imports.formats import (
    _choose_encoding,
    _csv_rows,
    _first_char,
    _guess_delimiter,
    _head,
    _is_gzip,
    _json_array_records,
    _jsonl_records,
    _open_workbook,
    _tabular_records,
    _text_stream,
    _what_binary,
    detect_format,
    open_binary,
    resolve_path,
)
from tingfeng.collect.connectors.imports.mapping import Mapper, _Bad
from tingfeng.collect.connectors.imports.values import _as_kind, json_type, parse_count, parse_time
from tingfeng.collect.errors import CollectError, ConfigError
from tingfeng.collect.items import ItemError, RawItem

# The names other modules import from here (replay, push, ingest, tests), wherever they live now.
__all__ = [
    "CHINA_TZ",
    "DEFAULT_MAPPING",
    "EMPTY_REPOST_TEXT",
    "FIELDS",
    "PRESET_DIR",
    "Format",
    "ImportConfig",
    "ImportConnector",
    "Mapper",
    "MappingValue",
    "Preset",
    "Variant",
    "_as_kind",
    "_ced_problem",
    "_is_gzip",
    "ced_local_time",
    "ced_repost_item",
    "ced_repost_time",
    "ced_source_item",
    "ced_source_time",
    "detect_format",
    "iter_file",
    "json_type",
    "load_preset",
    "open_binary",
    "parse_count",
    "parse_time",
    "preset_names",
    "read_items",
    "resolve_path",
]


def iter_file(
    config: ImportConfig,
    *,
    offset: int = 0,
    limit: int | None = None,
    now: datetime | None = None,
) -> Iterator[RawItem | ItemError]:
    """Items (and errors) of the file in `config`, one per record, after skipping `offset` records.

    `limit` stops after that many items (errors do not count). Raises ConfigError when the file
    is missing or is not what the format says.
    """
    path = resolve_path(config.path)
    sample = _head(path)
    preset = load_preset(config.preset) if config.preset else None
    fmt = config.format
    if fmt == "auto":
        fmt = (preset.format if preset and preset.format else None) or detect_format(
            path, sample, config
        )
    if fmt != "xlsx":
        binary = _what_binary(sample)
        if binary is not None:
            hint = " Use format xlsx." if binary.startswith("a ZIP") else ""
            raise ConfigError(
                f"{path.name} does not look like a {fmt.upper()} file: it starts like {binary}."
                f"{hint} Give a JSONL, JSON, CSV, XLSX or CED file (optionally .gz)."
            )
    elif not sample.startswith(b"PK\x03\x04"):
        what = _what_binary(sample) or "a text file"
        raise ConfigError(
            f"{path.name} is not an .xlsx workbook: it looks like {what}. "
            "Choose the matching format (csv, jsonl) or save the sheet as .xlsx."
        )
    if limit is not None and limit <= 0:
        return
    items = _items(path, fmt, config, sample, offset, now or datetime.now(), preset)
    produced = 0
    for item in items:
        yield item
        if isinstance(item, RawItem):
            produced += 1
            if limit is not None and produced >= limit:
                return


def _items(
    path: Path,
    fmt: str,
    config: ImportConfig,
    sample: bytes,
    offset: int,
    now: datetime,
    preset: Preset | None,
) -> Iterator[RawItem | ItemError]:
    if fmt == "ced":
        with open_binary(path) as handle:
            yield from _guard(
                _ced_items(handle, path.name, config.platform or "weibo", offset), path
            )
        return
    encoding = _choose_encoding(config, sample)
    mapper = Mapper(
        variants=_variants(config),
        platform=config.platform or (preset.platform if preset else None),
        kind=config.kind,
        time_format=config.time_format or (preset.time_format if preset else None),
        now=now,
        excel=fmt == "xlsx",
        encoding=encoding,
        replacement_decoded=fmt == "csv",
    )
    what = path.name
    with _records(path, fmt, config, sample, encoding, mapper, offset) as records:
        first_record = True
        for where, record in _guard(records, path):
            if isinstance(record, _Bad):
                yield ItemError(where, record.message)
                continue
            if first_record and fmt in ("jsonl", "json"):
                mapper.check_first(record, what)
            first_record = False
            yield mapper.build(record, where)


@contextmanager
def _records(
    path: Path,
    fmt: str,
    config: ImportConfig,
    sample: bytes,
    encoding: str,
    mapper: Mapper,
    skip: int,
) -> Iterator[Iterator[tuple[str, dict[str, Any] | _Bad]]]:
    """The file's records, the first `skip` left out."""
    what = path.name
    if fmt == "xlsx":
        with _open_workbook(path, config.sheet) as sheet:
            rows = ((n, list(r)) for n, r in enumerate(sheet.iter_rows(values_only=True), 1))
            records = _tabular_records(rows, mapper, f"{what} (sheet {sheet.title!r})", "row")
            yield islice(records, skip, None)
        return
    with open_binary(path) as handle:
        if fmt == "jsonl" or (fmt == "json" and _first_char(sample) != b"["):
            # (A .json file holding objects one after another is read as JSON Lines.)
            yield _jsonl_records(handle, encoding, skip)
        elif fmt == "json":
            yield islice(_json_array_records(handle, encoding), skip, None)
        elif fmt == "csv":
            head = sample.decode(encoding, errors="replace").lstrip("\ufeff")
            delimiter = config.delimiter or _guess_delimiter(head, path)
            rows = _csv_rows(_text_stream(handle, encoding), delimiter)
            yield islice(_tabular_records(rows, mapper, what, "line"), skip, None)
        else:
            raise ConfigError(f"Unknown format {fmt!r}: use jsonl, json, csv, xlsx or ced.")


def _guard(items: Iterator[Any], path: Path) -> Iterator[Any]:
    """Turns a damaged compressed stream into a sentence instead of a zlib traceback."""
    try:
        yield from items
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise CollectError(
            f"{path.name} is damaged or truncated ({exc}); the items before the damage were read. "
            "Fetch the file again."
        ) from exc


def read_items(
    path: str | os.PathLike[str],
    format: Format = "auto",
    mapping: dict[str, MappingValue] | None = None,
    platform: str | None = None,
    limit: int | None = None,
    *,
    preset: str | None = None,
    encoding: str = "auto",
    time_format: str | None = None,
    kind: str | None = None,
    sheet: str | None = None,
    delimiter: str | None = None,
    offset: int = 0,
    now: datetime | None = None,
) -> Iterator[RawItem | ItemError]:
    """Items of a file, streamed: what `tingfeng ingest FILE --format ...` reads.

    Raises ConfigError for a bad option or a wrong file, before the first item.
    """
    raw: dict[str, Any] = {
        "path": str(path),
        "format": format,
        "mapping": mapping or {},
        "platform": platform,
        "preset": preset,
        "encoding": encoding,
        "time_format": time_format,
        "kind": kind,
        "sheet": sheet,
        "delimiter": delimiter,
    }
    config = ImportConnector.from_config({k: v for k, v in raw.items() if v is not None}).config
    assert isinstance(config, ImportConfig)
    items = iter_file(config, offset=offset, limit=limit, now=now)
    # Start reading now, so a wrong file fails here rather than at the first next().
    first = next(items, None)
    if first is None:
        return iter(())
    return _chain_first(first, items)


def _chain_first(
    first: RawItem | ItemError, rest: Iterator[RawItem | ItemError]
) -> Iterator[RawItem | ItemError]:
    yield first
    yield from rest


# --------------------------------------------------------------------------------------------
# The connector


@register
class ImportConnector(Connector):
    """Reads a file on this machine once; items appended to it later are read on the next run."""

    kind: ClassVar[str] = "import"
    title: ClassVar[str] = "File import (JSONL, CSV, Excel, CED)"
    Config: ClassVar[type[BaseModel]] = ImportConfig
    uses_network: ClassVar[bool] = False

    def collect(self, ctx: CollectContext) -> Iterator[RawItem | ItemError]:
        """Items from `state["offset"]` on. Re-reading is safe: the store ignores items it holds."""
        config = self.config
        assert isinstance(config, ImportConfig)
        path = resolve_path(config.path)
        size = path.stat().st_size
        offset = int(ctx.state.get("offset", 0))
        # A smaller file is a new file, not a grown one: read it from the start.
        if size < int(ctx.state.get("size", 0)):
            offset = 0
        ctx.state["size"] = size
        ctx.state["offset"] = offset
        for item in iter_file(config, offset=offset, limit=ctx.limit, now=ctx.now()):
            # Counted before yielding: a consumer that stops here has received this record.
            offset += 1
            ctx.state["offset"] = offset
            yield item
