"""Secrets in the configuration: "env:VAR_NAME" references and masking for printing."""

from __future__ import annotations

import os
import re
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
    values and the credentials inside URLs hidden."""
    key = path.rpartition(".")[2]
    if isinstance(data, dict):
        return {k: masked(v, secret_paths, f"{path}.{k}" if path else k) for k, v in data.items()}
    if isinstance(data, list):
        return [masked(v, secret_paths, f"{path}[{i}]") for i, v in enumerate(data)]
    if isinstance(data, str) and (path in secret_paths or (key and is_secret_key(key))):
        return MASK
    if isinstance(data, str) and "://" in data:
        return mask_url(data)
    return data


def mask_url(url: str) -> str:
    """A URL, or a comma-separated list of them (NATS servers), with its credentials
    hidden: a password (`user:pw@` -> `user:********@`), a token (`token@` ->
    `********@`) and secret-named query parameters (`?password=…`, `?token=…`)."""
    return ",".join(_mask_one(part) for part in url.split(","))


# Schemes whose `name@host` names a user, not a token.
_USER_ONLY = ("postgres", "sqlite", "mysql", "mariadb")


def _mask_one(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    head, q, query = rest.partition("?")
    host_end = len(head)
    for stop in ("/", "#"):
        at = head.find(stop)
        if at != -1:
            host_end = min(host_end, at)
    netloc, path = head[:host_end], head[host_end:]
    creds, at, host = netloc.rpartition("@")
    if at:
        user, colon, _ = creds.partition(":")
        if colon:
            netloc = f"{user}:{MASK}@{host}"
        elif not scheme.lower().startswith(_USER_ONLY):  # a lone token (nats://token@host)
            netloc = f"{MASK}@{host}"
    if q:
        query = "&".join(_mask_param(p) for p in query.split("&"))
    return f"{scheme}://{netloc}{path}{q}{query}"


def _mask_param(param: str) -> str:
    name, eq, _ = param.partition("=")
    return f"{name}={MASK}" if eq and is_secret_key(name) else param


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]]+")


def mask_text(text: str) -> str:
    """Free text (a log line, an error) with the credentials of every URL in it hidden."""
    return _URL.sub(lambda m: mask_url(m.group(0)), text) if "://" in text else text


def secret_values(data: Any, secret_paths: frozenset[str] | set[str] = frozenset(),
                  path: str = "") -> list[str]:
    """Every secret string in `data`: given as an "env:" reference or under a secret name."""
    key = path.rpartition(".")[2]
    if isinstance(data, dict):
        return [v for k, item in data.items()
                for v in secret_values(item, secret_paths, f"{path}.{k}" if path else k)]
    if isinstance(data, list):
        return [v for i, item in enumerate(data)
                for v in secret_values(item, secret_paths, f"{path}[{i}]")]
    if isinstance(data, str) and data and (path in secret_paths or (key and is_secret_key(key))):
        return [data]
    return []


def scrub(text: str, secrets: list[str]) -> str:
    """`text` (an error about a value) with each secret it quotes replaced by the mask, and
    the credentials of its URLs hidden."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(f'"{secret}"', MASK).replace(repr(secret), MASK)
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
    return mask_text(text)
