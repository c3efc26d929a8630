"""The one JSON encoder: events out, request replies, `--json` output and JSON logs.

orjson, with money (Decimal) as a decimal string so no amount passes through a float;
times are ISO 8601 with their zone, enums their value.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson


def _strict(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot serialise {type(value).__name__} as JSON")


def _lenient(value: Any) -> Any:
    try:
        return _strict(value)
    except TypeError:
        return str(value)


def to_json_bytes(value: Any, *, pretty: bool = False, lenient: bool = False) -> bytes:
    """`value` as UTF-8 JSON; `pretty` indents by two and sorts nothing; `lenient` writes
    what it cannot serialise as its str() (for logs) instead of raising TypeError."""
    option = orjson.OPT_SERIALIZE_NUMPY | (orjson.OPT_INDENT_2 if pretty else 0)
    return orjson.dumps(value, default=_lenient if lenient else _strict, option=option)


def to_json(value: Any, *, pretty: bool = False, lenient: bool = False) -> str:
    return to_json_bytes(value, pretty=pretty, lenient=lenient).decode()
