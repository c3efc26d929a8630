"""The files `stormd import` reads: JSON Lines and CSV, streamed, one record a line.

Each source yields `(line number, data, raw)`: `data` is the record as a plain dict when it
parses the cheap way (orjson; a CSV row without dotted columns), else None; `raw` is what
`validate` hands the pydantic model, which is always the judge of a record the fast path
does not accept, so a bad record is reported in the same words whichever path met it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from stormd.schema.wire.events import _first_error

JSON_COLUMNS = frozenset({"items", "pushTokens", "promotionCodes"})
# Bytes a file read takes: each read lets go of the GIL and then waits to get it back from
# the database driver's thread, so 8 KiB reads (every ~40 orders) stalled the parsing.
READ_BUFFER = 1 << 20

Record = tuple[int, dict[str, Any] | None, Any]


class ImportFailed(Exception):
    """A row that cannot be imported; nothing of its file was kept."""

    def __init__(self, line: int, reason: str):
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


def open_source(path: Path) -> JsonLines | CsvRows:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return JsonLines(path)
    if suffix == ".csv":
        return CsvRows(path)
    raise ValueError(f"{path}: unknown file type {suffix or '(none)'}; use .csv or .jsonl")


class Source:
    """A file read as a stream; `share_read()` says how far, for estimating its rows."""

    def __init__(self, path: Path):
        self.path = path
        self.buffer: Any = None  # the binary file being read, while it is

    def share_read(self) -> float:
        """The share of the file's bytes read so far (read-ahead included), 0 to 1; 1 once
        the file is read to its end."""
        if self.buffer is None or self.buffer.closed:
            return 1.0
        size = self.path.stat().st_size
        return min(1.0, self.buffer.tell() / size) if size else 1.0


class JsonLines(Source):
    """One JSON object a line; blank lines are skipped."""

    def records(self, parse: bool = True) -> Iterator[Record]:
        loads = orjson.loads
        with self.path.open("rb", buffering=READ_BUFFER) as fh:
            self.buffer = fh
            for line_no, line in enumerate(fh, 1):
                try:
                    data = loads(line) if parse else None
                except orjson.JSONDecodeError:
                    data = None
                if data is None and not line.strip():
                    continue
                yield line_no, data if type(data) is dict else None, line

    @staticmethod
    def validate(model: type[BaseModel], raw: bytes, line_no: int) -> Any:
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            raise ImportFailed(line_no, _first_error(exc, "")) from None


class CsvRows(Source):
    """A header row, then one record a row: dotted columns nest (`consent.sms`), the list
    columns hold JSON, an empty cell means "not given"."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.header: list[str] = []

    def records(self, parse: bool = True) -> Iterator[Record]:
        with self.path.open(newline="", encoding="utf-8-sig", buffering=READ_BUFFER) as fh:
            self.buffer = fh.buffer
            reader = csv.reader(fh)
            for cells in reader:
                if cells:
                    self.header = cells
                    break
            header = self.header
            width = len(header)
            simple = parse and not any("." in column for column in header)
            json_columns = [c for c in header if c in JSON_COLUMNS]
            for cells in reader:
                if not cells:
                    continue
                data = None
                if simple and len(cells) <= width:
                    data = _flat(header, cells, json_columns)
                yield reader.line_num, data, cells

    def validate(self, model: type[BaseModel], raw: list[str], line_no: int) -> Any:
        row: dict[Any, Any] = dict(zip(self.header, raw, strict=False))
        if len(raw) > len(self.header):
            row[None] = raw[len(self.header):]  # as csv.DictReader keeps surplus cells
        try:
            return model.model_validate(nested(row, line_no))
        except ValidationError as exc:
            raise ImportFailed(line_no, _first_error(exc, "")) from None


def _flat(header: list[str], cells: list[str], json_columns: list[str]
          ) -> dict[str, Any] | None:
    """The row's given cells, JSON columns parsed; None when a JSON cell does not parse
    (the model path then names the problem)."""
    data = {c: v for c, v in zip(header, cells, strict=False) if v}
    for column in json_columns:
        if column in data:
            try:
                data[column] = orjson.loads(data[column])
            except orjson.JSONDecodeError:
                return None
    return data


def nested(row: dict[Any, str], line: int) -> dict[str, Any]:
    """A CSV row as the event data it stands for: dotted columns nested, JSON cells parsed,
    empty cells left out."""
    data: dict[str, Any] = {}
    for column, cell in row.items():
        if column is None:
            raise ImportFailed(line, "more cells than header columns")
        if cell is None or cell == "":
            continue
        if column in JSON_COLUMNS:
            try:
                cell = json.loads(cell)
            except ValueError as exc:
                raise ImportFailed(line, f"{column}: not JSON ({exc})") from None
        *parents, leaf = column.split(".")
        target = data
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ImportFailed(line, f"column {column} clashes with column {part}")
        target[leaf] = cell
    return data
