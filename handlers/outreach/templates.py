"""Message templates: Jinja2 in a sandbox, a body per channel, Bengali and English.

System templates live as files under handlers/outreach/library/<slug>/<channel>.<locale>.j2
(an optional first line `Subject: …` for email) with the slug's metadata in meta.toml.
Merchant templates come from the database and render in the same sandbox.

The sandbox is Jinja2's ImmutableSandboxedEnvironment (no attribute access to internals,
no mutation of passed-in data) plus limits of our own: a render deadline, an output size
cap, and refusal of `*`/`**` and padding filters that would build huge values. A template
declares its variable schema implicitly: every undeclared name it reads. A missing one is
refused before anything is sent, by name.

An SMS body may say how far it may be shortened: the template's `sms_max_segments` (in
meta.toml, or a top-level key of a store's or a campaign's content) caps its parts, and a
`{# sms_tail #}` mark in the body splits the part trimming may cut (before it) from the part
it keeps whole (after it: a code, a link). The pipeline trims at send time (plugins/policy/sms_fit.py).
"""

from __future__ import annotations

import operator
import re
import time
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATE_DIR = Path(__file__).parent / "library"
DEFAULT_LOCALE = "bn"
LOCALES = ("bn", "en")
RENDER_SECONDS = 0.5  # CPU per message; a template that loops longer is refused
MAX_OUTPUT_CHARS = 100_000  # an email body past this is a template bug, not a message
MAX_RANGE = 10_000
MAX_POWER = 1_000
OPTIONS = ("sms_max_segments",)  # top-level keys of a template's content that are not channels
MAX_SMS_SEGMENTS = 10
SMS_TAIL_MARK = re.compile(r"\{#-?\s*sms_tail\s*-?#\}")


class TemplateError(Exception):
    """A template that cannot be rendered: unknown, unsafe, or missing a variable."""


class MissingVariables(TemplateError):
    """Variables the template reads that the caller did not supply (refused pre-send)."""

    def __init__(self, names: Iterable[str], where: str = ""):
        self.names = sorted(set(names))
        place = f" in {where}" if where else ""
        super().__init__(f"missing variable(s){place}: {', '.join(self.names)}")


class TemplateLimitExceeded(TemplateError):
    """The render ran past the time limit or the output size cap."""


class RenderTimeout(TemplateLimitExceeded):
    """The render ran past the time limit."""


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    body: str
    html: str | None = None


class _Budget:
    """The time left to the render in progress (one per thread of rendering). Counted in
    the thread's CPU time: a loaded machine descheduling the daemon is not the template's
    fault (it failed whole 5,000-cart batches under load)."""

    deadline: float = float("inf")
    ticks: int = 0

    def check(self) -> None:
        # Reading the clock is a system call: look every 32nd operation (a runaway loop
        # does millions, an ordinary message a few dozen).
        self.ticks += 1
        if self.ticks & 31:
            return
        if time.thread_time() > self.deadline:
            raise RenderTimeout(f"template ran longer than {RENDER_SECONDS}s")


_budget = _Budget()


class StormSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with time and size limits on the operations that can blow up."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator_: str, left: Any, right: Any) -> Any:
        _budget.check()
        if operator_ == "**":
            if isinstance(right, (int, float)) and abs(right) > MAX_POWER:
                raise SecurityError(f"exponent {right} is over the limit of {MAX_POWER}")
            return operator.pow(left, right)
        for seq, n in ((left, right), (right, left)):
            if (isinstance(seq, (str, list, tuple)) and isinstance(n, int)
                    and len(seq) * n > MAX_OUTPUT_CHARS):
                raise SecurityError("repetition would exceed the output size limit")
        return operator.mul(left, right)

    def call(self, context, obj, /, *args: Any, **kwargs: Any) -> Any:
        _budget.check()
        return super().call(context, obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _budget.check()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _budget.check()
        return super().getitem(obj, argument)


def _checked_range(*args: int) -> Iterator[int]:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise SecurityError(f"range of {len(r)} is over the limit of {MAX_RANGE}")
    for i in r:
        _budget.check()
        yield i


def _taka(value: Any) -> str:
    return f"৳{float(value):,.0f}"


def _capped_width(name: str, fn):
    def wrapped(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> Any:
        if isinstance(width, int) and width > 1000:
            raise SecurityError(f"{name} width {width} is over the limit of 1000")
        return fn(value, width, *args, **kwargs)

    return wrapped


def _make_env(autoescape: bool) -> StormSandbox:
    env = StormSandbox(undefined=StrictUndefined, autoescape=autoescape, keep_trailing_newline=False)
    env.filters["taka"] = _taka
    for name in ("center", "indent", "truncate", "wordwrap"):
        env.filters[name] = _capped_width(name, env.filters[name])
    env.globals["range"] = _checked_range
    return env


@lru_cache(maxsize=2)
def sandbox(html: bool = False) -> StormSandbox:
    """The text sandbox, or the HTML one (autoescaping every value)."""
    return _make_env(autoescape=html)


def required_variables(source: str, html: bool = False) -> frozenset[str]:
    """The template's variable schema: every name it reads that it does not define."""
    env = sandbox(html)
    try:
        ast = env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error on line {exc.lineno}: {exc.message}") from None
    return frozenset(meta.find_undeclared_variables(ast)) - set(env.globals)


def variables_in_order(source: str) -> tuple[str, ...]:
    """The template's variables in order of first use: the positional parameters of a
    WhatsApp template approved with the same wording ({{1}}, {{2}}, …)."""
    env = sandbox(False)
    required = required_variables(source)
    seen: dict[str, None] = {}
    for node in env.parse(source).find_all(nodes.Name):
        if node.ctx == "load" and node.name in required:
            seen.setdefault(node.name, None)
    return tuple(seen)


def check_variables(source: str, supplied: Iterable[str], where: str = "", html: bool = False) -> None:
    """Refuse, naming them, the variables a template needs that `supplied` lacks."""
    missing = required_variables(source, html) - set(supplied)
    if missing:
        raise MissingVariables(missing, where)


def refuse_internals(source: str, name: str = "template", html: bool = False) -> None:
    """Refuse at compile time what the sandbox would refuse at render time anyway: any
    `_private` or `__dunder__` attribute, so a merchant learns it when saving."""
    for node in sandbox(html).parse(source).find_all((nodes.Getattr, nodes.Getitem)):
        attr = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
        if isinstance(attr, str) and attr.startswith("_"):
            raise TemplateError(f"{name}: line {node.lineno}: access to {attr!r} is not allowed")


def sms_segment_limit(value: Any, where: str = "sms_max_segments") -> int | None:
    """A template's `sms_max_segments`: None (no limit) or a whole number of parts."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SMS_SEGMENTS:
        raise TemplateError(f"{where}: a whole number of SMS parts from 1 to {MAX_SMS_SEGMENTS}")
    return value


def _tail_template(source: str, name: str, required: frozenset[str]):
    """The body after its `{# sms_tail #}` mark, compiled on its own (None without a mark)."""
    mark = SMS_TAIL_MARK.search(source)
    if mark is None:
        return None
    tail = source[mark.end():]
    try:
        needs = required_variables(tail)
        compiled = sandbox(False).from_string(tail)
    except (TemplateError, TemplateSyntaxError):
        raise TemplateError(f"{name}: the sms_tail mark must stand outside any {{% if %}} or "
                            "{% for %} block") from None
    if needs - required:
        raise TemplateError(f"{name}: after the sms_tail mark, {', '.join(sorted(needs - required))} "
                            "must not be set before it")
    return compiled


class CompiledTemplate:
    """One channel body compiled once, rendered for many customers.

    Email also gets an HTML part: the merchant's own HTML source if given (autoescaped),
    else the shared layout wrapping the text paragraphs (escaped as well).
    """

    def __init__(self, source: str, name: str = "template", *, html_source: str | None = None,
                 layout: bool = False):
        self.name = name
        self.source = source
        self.html_source = html_source
        self.required = required_variables(source) | (
            required_variables(html_source, html=True) if html_source else frozenset()
        )
        try:
            refuse_internals(source, name)
            if html_source:
                refuse_internals(html_source, name, html=True)
            self._text = sandbox(False).from_string(source)
            self._html = sandbox(True).from_string(html_source) if html_source else None
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{name}: syntax error on line {exc.lineno}: {exc.message}") from None
        self._layout = layout and html_source is None
        self.order = variables_in_order(source)
        self._tail = _tail_template(source, name, self.required)

    def sms_fit(self, limit: int | None, variables: dict[str, Any], body: str) -> dict[str, Any]:
        """What an SMS rendered from this body carries for trimming at send time: the
        template's segment limit and, with a `{# sms_tail #}` mark, the fixed tail (with the
        space before it) that `body` ends with. Empty without a limit."""
        if not limit:
            return {}
        if self._tail is None:
            return {"sms_max_segments": limit}
        tail = _render_limited(self._tail, variables, self.name)
        if not tail or not body.endswith(tail):
            return {"sms_max_segments": limit}
        start = len(body) - len(tail)
        while start and body[start - 1].isspace():
            start -= 1
        return {"sms_max_segments": limit, "sms_tail": body[start:]}

    def params(self, variables: dict[str, Any]) -> list[str]:
        """Positional parameters for a WhatsApp template: the scalar variables in order of
        first use (a missing or empty one as "")."""
        return [_param(variables.get(n)) for n in self.order
                if isinstance(variables.get(n), (str, int, float, Decimal, type(None)))]

    def check(self, supplied: Iterable[str]) -> None:
        """Refuse, by name, any variable this template reads that `supplied` lacks."""
        missing = self.required - set(supplied)
        if missing:
            raise MissingVariables(missing, self.name)

    def render(self, variables: dict[str, Any]) -> Rendered:
        text = _render_limited(self._text, variables, self.name)
        subject = None
        if text.startswith("Subject:"):
            first, _, text = text.partition("\n")
            subject = first.removeprefix("Subject:").strip()
        text = text.strip()
        html = None
        if self._html is not None:
            html = _render_limited(self._html, variables, self.name)
        elif self._layout:
            html = _render_limited(_layout(), {
                "subject": subject or "", "paragraphs": [p for p in text.split("\n\n") if p],
                "unsubscribe_url": variables.get("unsubscribe_url"),
            }, "_layout/email.html")
        return Rendered(subject=subject, body=text, html=html)


def _param(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"
    return str(value)


@lru_cache(maxsize=1)
def _layout():
    source = (TEMPLATE_DIR / "_layout" / "email.html.j2").read_text(encoding="utf-8")
    return sandbox(True).from_string(source)


def _render_limited(template, variables: dict[str, Any], name: str) -> str:
    try:
        return _render_once(template, variables, name)
    except RenderTimeout:
        # Once more: a garbage collection of a big heap can eat the budget of an innocent
        # render; a template that really loops fails again.
        return _render_once(template, variables, name)


def _render_once(template, variables: dict[str, Any], name: str) -> str:
    _budget.deadline = time.thread_time() + RENDER_SECONDS
    size = 0
    parts: list[str] = []
    append = parts.append
    try:
        # root_render_func directly (what generate() wraps): thousands of carts a second
        # render here. The sandbox's own operations and every chunk tick the budget; the
        # size is checked on every chunk.
        for chunk in template.root_render_func(template.new_context(variables)):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateLimitExceeded(f"{name}: output over {MAX_OUTPUT_CHARS} characters")
            append(chunk)
            _budget.check()
    except UndefinedError as exc:
        raise TemplateError(f"{name}: missing variable: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateError(f"{name}: refused by the sandbox: {exc}") from None
    finally:
        _budget.deadline = float("inf")
    return "".join(parts).strip()


# --- the system library -------------------------------------------------------------------


@dataclass(frozen=True)
class SystemTemplate:
    """One slug of the library: metadata from meta.toml, bodies from the .j2 files."""

    slug: str
    name: str
    type: str
    category: str
    description: str
    recommended_discount: str | None
    default_discount_percent: int | None
    channel_mix: tuple[str, ...]
    bodies: dict[str, dict[str, str]] = field(default_factory=dict)  # channel -> locale -> src
    sms_max_segments: int | None = None

    def source(self, channel: str, locale: str) -> str:
        by_locale = self.bodies.get(channel)
        if not by_locale:
            raise TemplateError(f"template {self.slug!r} has no {channel} body")
        for loc in (locale, "en", DEFAULT_LOCALE):
            if loc in by_locale:
                return by_locale[loc]
        raise TemplateError(f"template {self.slug!r} has no {channel} body")


def _read_system(directory: Path) -> SystemTemplate:
    meta_path = directory / "meta.toml"
    info: dict[str, Any] = tomllib.loads(meta_path.read_text("utf-8")) if meta_path.is_file() else {}
    bodies: dict[str, dict[str, str]] = {}
    for path in sorted(directory.glob("*.j2")):
        channel, _, locale = path.stem.partition(".")
        bodies.setdefault(channel, {})[locale] = path.read_text(encoding="utf-8")
    return SystemTemplate(
        slug=directory.name,
        name=info.get("name", directory.name.replace("_", " ").title()),
        type=info.get("type", "AUTOMATION"),
        category=info.get("category", "AUTOMATION"),
        description=info.get("description", ""),
        recommended_discount=info.get("recommended_discount"),
        default_discount_percent=info.get("default_discount_percent"),
        channel_mix=tuple(info.get("channel_mix", sorted(bodies))),
        bodies=bodies,
        sms_max_segments=sms_segment_limit(info.get("sms_max_segments"),
                                           f"{directory.name}/meta.toml: sms_max_segments"),
    )


@lru_cache(maxsize=1)
def system_library() -> dict[str, SystemTemplate]:
    """Every system template shipped with stormd, by slug."""
    return {
        d.name: _read_system(d)
        for d in sorted(TEMPLATE_DIR.iterdir())
        if d.is_dir() and not d.name.startswith("_")
    }


def system_template(slug: str) -> SystemTemplate:
    try:
        return system_library()[slug]
    except KeyError:
        raise TemplateError(f"no system template {slug!r}") from None


@lru_cache(maxsize=512)
def compiled_system(slug: str, channel: str, locale: str) -> CompiledTemplate:
    """A system body compiled once per process."""
    source = system_template(slug).source(channel, locale)
    return CompiledTemplate(source, f"{slug}/{channel}.{locale}", layout=channel == "email")


def system_sms_fit(slug: str, channel: str, locale: str, variables: dict[str, Any],
                   body: str) -> dict[str, Any]:
    """`CompiledTemplate.sms_fit` for a system template's SMS, with its meta's limit."""
    limit = system_template(slug).sms_max_segments if channel == "sms" else None
    return compiled_system(slug, channel, locale).sms_fit(limit, variables, body) if limit else {}


def system_whatsapp_fields(slug: str, channel: str, locale: str, variables: dict[str, Any],
                           header_image: str | None = None) -> dict[str, Any]:
    """What a WhatsApp template message needs beside its text: the positional parameters
    (`CompiledTemplate.params`) and, when known, a header picture."""
    if channel != "whatsapp":
        return {}
    fields: dict[str, Any] = {"params": compiled_system(slug, channel, locale).params(variables)}
    if header_image:
        fields["header_image"] = header_image
    return fields


def compile_source(source: str, channel: str, name: str, html_source: str | None = None
                   ) -> CompiledTemplate:
    """A merchant's body compiled in the same sandbox."""
    return CompiledTemplate(source, name, html_source=html_source, layout=channel == "email")


def render_template(slug: str, channel: str, locale: str, variables: dict[str, Any]) -> Rendered:
    """Render a system template for a channel in the customer's locale (else English)."""
    return compiled_system(slug, channel, locale).render(variables)
