"""Message templates: Jinja2 in a sandbox, a body per channel, Bengali and English.

System templates live as files under handlers/templates/<slug>/<channel>.<locale>.j2
(an optional first line `Subject: …` for email). Merchant templates come from the
database and render in the same sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATE_DIR = Path(__file__).parent / "templates"
DEFAULT_LOCALE = "bn"


class TemplateError(Exception):
    """A template that cannot be rendered: unknown, unsafe, or missing a variable."""


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    body: str


@lru_cache(maxsize=1)
def sandbox() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters["taka"] = lambda v: f"৳{float(v):,.0f}"
    return env


def _source(slug: str, channel: str, locale: str) -> str:
    for loc in (locale, "en", DEFAULT_LOCALE):
        path = TEMPLATE_DIR / slug / f"{channel}.{loc}.j2"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise TemplateError(f"no template {slug!r} for channel {channel!r}")


def render_text(source: str, variables: dict[str, Any]) -> str:
    try:
        return sandbox().from_string(source).render(**variables).strip()
    except UndefinedError as exc:
        raise TemplateError(f"missing variable: {exc.message}") from None


def render_template(slug: str, channel: str, locale: str, variables: dict[str, Any]) -> Rendered:
    """Render a system template for a channel in the customer's locale (else English)."""
    text = render_text(_source(slug, channel, locale), variables)
    subject = None
    if text.startswith("Subject:"):
        first, _, text = text.partition("\n")
        subject = first.removeprefix("Subject:").strip()
    return Rendered(subject=subject, body=text.strip())
