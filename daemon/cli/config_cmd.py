"""`stormd config check`: validate the configuration and print the effective values."""

from __future__ import annotations

import tomllib

import click

from stormd.config.secrets import masked
from stormd.daemon.cli.common import (
    config_option,
    echo_json,
    json_option,
    providers_or_exit,
    settings_or_exit,
)


@click.group("config")
def command() -> None:
    """Configuration."""


@command.command("check")
@config_option
@json_option
def check(config_path: str | None, as_json: bool) -> None:
    """Validate the configuration; print the effective settings with secrets masked."""
    settings = settings_or_exit(config_path)
    providers_or_exit(settings)
    effective = masked(settings.model_dump(mode="json"), settings.secret_paths)
    if as_json:
        echo_json(effective)
        return
    click.echo(_as_toml(effective))
    click.echo("# configuration OK")


def _as_toml(data: dict) -> str:
    lines: list[str] = []
    for section, values in data.items():
        if section == "providers":
            for name, provider in values.items():
                lines.append(f"[providers.{name}]")
                lines.extend(f"{k} = {_value(v)}" for k, v in provider.items())
                lines.append("")
            continue
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {_value(v)}" for k, v in values.items())
        lines.append("")
    text = "\n".join(lines)
    tomllib.loads(text)  # what we print is itself a valid stormd.toml
    return text


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    return _value(str(value))
