"""Secrets in the configuration: "env:VAR_NAME" references and masking for printing."""

from __future__ import annotations

import os
from typing import Any

from stormd.config.errors import ConfigError

SECRET_WORDS = ("key", "secret", "token", "password", "passwd", "credential", "auth")
MASK = "********"


def is_secret_key(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def resolve_secret(value: Any, key: str = "") -> Any:
    """Turn "env:NAME" into the variable's value; other values pass through."""
    if isinstance(value, str) and value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise ConfigError(key, f"environment variable {name} is not set")
        return os.environ[name]
    return value


def resolve_all(data: Any, path: str = "", found: set[str] | None = None) -> Any:
    """Resolve every "env:" reference, naming the key on failure; the key paths that held
    one are added to `found`, so printing can mask them whatever their names."""
    if isinstance(data, dict):
        return {k: resolve_all(v, f"{path}.{k}" if path else k, found) for k, v in data.items()}
    if isinstance(data, list):
        return [resolve_all(v, f"{path}[{i}]", found) for i, v in enumerate(data)]
    if found is not None and isinstance(data, str) and data.startswith("env:"):
        found.add(path)
    return resolve_secret(data, path)


def masked(data: Any, secret_paths: frozenset[str] | set[str] = frozenset(),
           path: str = "") -> Any:
    """A copy fit for printing or logging: values given as "env:" references, secret-named
    values and URL passwords hidden."""
    key = path.rpartition(".")[2]
    if isinstance(data, dict):
        return {k: masked(v, secret_paths, f"{path}.{k}" if path else k) for k, v in data.items()}
    if isinstance(data, list):
        return [masked(v, secret_paths, f"{path}[{i}]") for i, v in enumerate(data)]
    if isinstance(data, str) and (path in secret_paths or (key and is_secret_key(key))):
        return MASK
    if isinstance(data, str) and "://" in data and "@" in data:
        return mask_url_password(data)
    return data


def mask_url_password(url: str) -> str:
    """postgresql://user:pw@host/db → postgresql://user:********@host/db."""
    scheme, _, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:{MASK}@{host}"
