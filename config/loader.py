"""Where the configuration comes from: file, environment overrides, defaults.

Lookup order (docs/configuration.md): `--config PATH`, `$STORMD_CONFIG`, `./stormd.toml`, built-in
defaults. `STORMD_<SECTION>__<KEY>` overrides any key (deeper keys with more `__`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from stormd.config.errors import ConfigError
from stormd.config.secrets import resolve_all, scrub, secret_values
from stormd.config.settings import Settings

ENV_PREFIX = "STORMD_"


def find_config_file(path: str | os.PathLike | None, env: Mapping[str, str]) -> Path | None:
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError("--config", f"{p} does not exist")
        return p
    if env.get("STORMD_CONFIG"):
        p = Path(env["STORMD_CONFIG"])
        if not p.is_file():
            raise ConfigError("STORMD_CONFIG", f"{p} does not exist")
        return p
    local = Path("stormd.toml")
    return local if local.is_file() else None


def _parse_env_value(raw: str) -> Any:
    """A TOML literal when the text is one (700, true, ["a","b"]), else the plain string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name or name == "STORMD_CONFIG":
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX):].split("__")]
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = _parse_env_value(raw)
    return data


def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not out:
            out = str(part)
        elif str(part).startswith(("function-", "constrained-")) or part in ("str", "list[str]"):
            continue
        else:
            out += f".{part}"
    return out


def _reason(error: dict) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] != "value_error" and "input" in error:
        value = error["input"]
        if not isinstance(value, (dict, list)):
            shown = f'"{value}"' if isinstance(value, str) else repr(value)
            return f"{shown} is invalid: {msg[0].lower()}{msg[1:]}"
    return msg


def settings_from_dict(data: dict[str, Any]) -> Settings:
    """Validated settings; "env:NAME" values anywhere are resolved first and remembered
    (`settings.secret_paths`) so that printing masks them."""
    secret_paths: set[str] = set()
    data = resolve_all(data, "", secret_paths)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        # The reason may quote the bad value: a secret one (an "env:" value, a password)
        # is never echoed.
        reason = scrub(_reason(error), secret_values(data, secret_paths))
        raise ConfigError(_key_path(error["loc"]), reason) from None
    settings._secret_paths = frozenset(secret_paths)
    return settings


def load_settings(
    path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """The effective settings, or a ConfigError naming the first bad key."""
    env = os.environ if env is None else env
    file = find_config_file(path, env)
    data: dict[str, Any] = {}
    if file is not None:
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(file), f"not valid TOML: {exc}") from None
    return settings_from_dict(apply_env_overrides(data, env))
