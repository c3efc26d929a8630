"""Message templates: Jinja2 in a sandbox, a body per channel, Bengali and English.

System templates live as files under handlers/outreach/library/<slug>/<channel>.<locale>.j2
(an optional first line `Subject: …` for email) with the slug's metadata in meta.toml.
Merchant templates come from the database and render in the same sandbox, in a worker
process (render_worker.py): the daemon only parses them.

The sandbox (sandbox.py) is Jinja2's ImmutableSandboxedEnvironment (no attribute access to
internals, no mutation of passed-in data) plus limits of our own on every operation that
can build a big value, a render deadline, a call-depth cap and an output size cap. A
template declares its variable schema implicitly: every undeclared name it reads. A
missing one is refused before anything is sent, by name.

An SMS body may say how far it may be shortened: the template's `sms_max_segments` (in
meta.toml, or a top-level key of a store's or a campaign's content) caps its parts, and a
`{# sms_tail #}` mark in the body splits the part trimming may cut (before it) from the part
it keeps whole (after it: a code, a link). The pipeline trims at send time (plugins/policy/sms_fit.py).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError, meta, nodes

from stormd.handlers.outreach.render_worker import Body, Job, render_in_worker
from stormd.handlers.outreach.sandbox import (
    MAX_OUTPUT_CHARS,
    MAX_RANGE,
    MAX_SOURCE_CHARS,
    RENDER_SECONDS,
    RenderTimeout,
    StormSandbox,
    TemplateError,
    TemplateLimitExceeded,
    make_sandbox,
    render_limited,
    syntax_error,
)
from stormd.schema.metrics import TEMPLATE_FAILURES

__all__ = ["MAX_OUTPUT_CHARS", "MAX_RANGE", "RENDER_SECONDS", "RenderTimeout",
           "TemplateError", "TemplateLimitExceeded"]

TEMPLATE_DIR = Path(__file__).parent / "library"
DEFAULT_LOCALE = "bn"
LOCALES = ("bn", "en")
OPTIONS = ("sms_max_segments",)  # top-level keys of a template's content that are not channels
MAX_SMS_SEGMENTS = 10
SMS_TAIL_MARK = re.compile(r"\{#-?\s*sms_tail\s*-?#\}")


class MissingVariables(TemplateError):
    """Variables the template reads that the caller did not supply (refused pre-send)."""

    def __init__(self, names: Iterable[str], where: str = "", lines: dict[str, int] | None = None):
        self.names = sorted(set(names))
        place = f" in {where}" if where else ""
        shown = [f"{n} (line {lines[n]})" if lines and n in lines else n for n in self.names]
        super().__init__(f"missing variable(s){place}: {', '.join(shown)}")


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    body: str
    html: str | None = None
    tail: str | None = None  # the body after its {# sms_tail #} mark, when asked for


@lru_cache(maxsize=4)
def sandbox(html: bool = False, merchant: bool = False) -> StormSandbox:
    """The text sandbox, or the HTML one (autoescaping every value); the system templates'
    or (merchant) a store's own templates' (sandbox.py)."""
    return make_sandbox(autoescape=html, merchant=merchant)


@lru_cache(maxsize=32)
def _tree(source: str, html: bool) -> nodes.Template:
    """The parse tree of a body (read only: shared by the checks below). Parsed, and its
    variables found, in the merchant sandbox: finding them runs Jinja2's code generator,
    which would fold constant expressions (a chain of `replace`s into gigabytes) in any
    other environment."""
    return sandbox(html, merchant=True).parse(source)


def _parse(source: str, html: bool = False, name: str = "template") -> nodes.Template:
    try:
        return _tree(source, html)
    except TemplateSyntaxError as exc:
        raise syntax_error(exc, name) from None
    except RecursionError:
        raise TemplateError(f"{name}: nested too deep to parse") from None


def required_variables(source: str, html: bool = False) -> frozenset[str]:
    """The template's variable schema: every name it reads that it does not define."""
    try:
        ast = _tree(source, html)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error on line {exc.lineno}: {exc.message}") from None
    except RecursionError:
        raise TemplateError("template nested too deep to parse") from None
    return frozenset(meta.find_undeclared_variables(ast)) - set(sandbox(html, True).globals)


def variable_lines(source: str, names: Iterable[str]) -> dict[str, int]:
    """The line where each of `names` is first read."""
    wanted, lines = set(names), {}
    for node in _tree(source, False).find_all(nodes.Name):
        if node.ctx == "load" and node.name in wanted:
            lines.setdefault(node.name, node.lineno)
    return lines


def variables_in_order(source: str) -> tuple[str, ...]:
    """The template's variables in order of first use: the positional parameters of a
    WhatsApp template approved with the same wording ({{1}}, {{2}}, …)."""
    required = required_variables(source)
    seen: dict[str, None] = {}
    for node in _tree(source, False).find_all(nodes.Name):
        if node.ctx == "load" and node.name in required:
            seen.setdefault(node.name, None)
    return tuple(seen)


def check_variables(source: str, supplied: Iterable[str], where: str = "", html: bool = False) -> None:
    """Refuse, naming them, the variables a template needs that `supplied` lacks."""
    missing = required_variables(source, html) - set(supplied)
    if missing:
        raise MissingVariables(missing, where, variable_lines(source, missing))


def refuse_internals(source: str, name: str = "template", html: bool = False) -> None:
    """Refuse at compile time what the sandbox would refuse at render time anyway: any
    `_private` or `__dunder__` attribute, so a merchant learns it when saving."""
    for node in _parse(source, html, name).find_all((nodes.Getattr, nodes.Getitem)):
        attr = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
        if isinstance(attr, str) and attr.startswith("_"):
            raise TemplateError(f"{name}: line {node.lineno}: access to {attr!r} is not allowed")


MAX_NESTING = 16  # blocks (if, for, macro, call, filter, set, with) inside each other
_BLOCKS = (nodes.If, nodes.For, nodes.Macro, nodes.CallBlock, nodes.FilterBlock,
           nodes.AssignBlock, nodes.With, nodes.Scope, nodes.Block)


def _too_deep(tree: nodes.Node) -> nodes.Node | None:
    """The first block nested more than MAX_NESTING deep, if any."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, _BLOCKS):
            depth += 1
            if depth > MAX_NESTING:
                return node
        stack.extend((child, depth) for child in node.iter_child_nodes())
    return None


def refuse_unsupported(source: str, name: str = "template", html: bool = False) -> None:
    """What a merchant body may not do at all: be longer than MAX_SOURCE_CHARS, nest
    blocks more than MAX_NESTING deep, or load other templates (`include`, `import`,
    `extends`: there are none to load)."""
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateError(f"{name}: {len(source):,} characters, over the limit of "
                            f"{MAX_SOURCE_CHARS:,}")
    tree = _parse(source, html, name)
    deep = _too_deep(tree)
    if deep is not None:
        raise TemplateError(f"{name}: line {deep.lineno}: blocks nested more than "
                            f"{MAX_NESTING} deep")
    for node in tree.find_all(
            (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        tag = {nodes.Include: "include", nodes.Import: "import", nodes.FromImport: "from",
               nodes.Extends: "extends"}[type(node)]
        raise TemplateError(f"{name}: line {node.lineno}: {{% {tag} %}} is not available "
                            "(a body stands alone)")


def sms_segment_limit(value: Any, where: str = "sms_max_segments") -> int | None:
    """A template's `sms_max_segments`: None (no limit) or a whole number of parts."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SMS_SEGMENTS:
        raise TemplateError(f"{where}: a whole number of SMS parts from 1 to {MAX_SMS_SEGMENTS}")
    return value


def _tail_source(source: str, name: str, required: frozenset[str]) -> str | None:
    """The body after its `{# sms_tail #}` mark, checked to stand on its own (None without
    a mark)."""
    mark = SMS_TAIL_MARK.search(source)
    if mark is None:
        return None
    tail = source[mark.end():]
    try:
        needs = required_variables(tail)
    except (TemplateError, TemplateSyntaxError):
        raise TemplateError(f"{name}: the sms_tail mark must stand outside any {{% if %}} or "
                            "{% for %} block") from None
    if needs - required:
        raise TemplateError(f"{name}: after the sms_tail mark, {', '.join(sorted(needs - required))} "
                            "must not be set before it")
    return tail


def failure_reason(exc: TemplateError) -> str:
    """The label of a render failure (metrics): its limit, a missing variable, or error."""
    if isinstance(exc, TemplateLimitExceeded):
        return exc.limit
    if isinstance(exc, MissingVariables) or "missing variable" in str(exc):
        return "variable"
    return "error"


class CompiledTemplate:
    """One channel body compiled once, rendered for many customers.

    Email also gets an HTML part: the merchant's own HTML source if given (autoescaped),
    else the shared layout wrapping the text paragraphs (escaped as well).

    A merchant's body (`merchant`) compiles in the merchant sandbox; `local=False` (a
    merchant's body in the daemon): the body is only parsed here (its variables,
    internals, sms_tail mark); it compiles and renders in the render worker, through
    `render_many`.
    """

    def __init__(self, source: str, name: str = "template", *, html_source: str | None = None,
                 layout: bool = False, local: bool = True, merchant: bool = False):
        self.name = name
        self.source = source
        self.html_source = html_source
        self.local = local
        if not local:
            refuse_unsupported(source, name)
            if html_source:
                refuse_unsupported(html_source, name, html=True)
        self.required = required_variables(source) | (
            required_variables(html_source, html=True) if html_source else frozenset()
        )
        refuse_internals(source, name)
        if html_source:
            refuse_internals(html_source, name, html=True)
        self._layout = layout and html_source is None
        self.order = variables_in_order(source)
        tail = _tail_source(source, name, self.required)
        self.has_tail = tail is not None
        self._text = self._html = self._tail = None
        if local:
            try:
                self._text = sandbox(False, merchant).from_string(source)
                self._html = (sandbox(True, merchant).from_string(html_source) if html_source
                              else None)
                self._tail = (sandbox(False, merchant).from_string(tail) if tail is not None
                              else None)
            except TemplateSyntaxError as exc:
                raise syntax_error(exc, name) from None
            except RecursionError:
                raise TemplateError(f"{name}: nested too deep to compile") from None
        self.body = Body(source, name, html_source, layout)

    def sms_fit(self, limit: int | None, rendered: Rendered) -> dict[str, Any]:
        """What an SMS rendered from this body carries for trimming at send time: the
        template's segment limit and, with a `{# sms_tail #}` mark, the fixed tail (with the
        space before it) that the body ends with. Empty without a limit. The tail is the
        one rendered with the body (`render(..., tail=True)`)."""
        if not limit:
            return {}
        tail, body = rendered.tail, rendered.body
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
            lines = variable_lines(self.source, missing)
            raise MissingVariables(missing, self.name, lines)

    def render(self, variables: dict[str, Any], tail: bool = False) -> Rendered:
        """Render here (a system body, or a merchant's inside the render worker)."""
        if not self.local:
            raise TemplateError(f"{self.name}: a merchant body renders in the worker "
                                "(render_many)")
        text = render_limited(self._text, variables, self.name)
        subject = None
        if text.startswith("Subject:"):
            first, _, text = text.partition("\n")
            subject = first.removeprefix("Subject:").strip()
        text = text.strip()
        html = None
        if self._html is not None:
            html = render_limited(self._html, variables, self.name)
        elif self._layout:
            html = render_limited(_layout(), {
                "subject": subject or "", "paragraphs": [p for p in text.split("\n\n") if p],
                "unsubscribe_url": variables.get("unsubscribe_url"),
            }, "_layout/email.html")
        tail_text = None
        if tail and self._tail is not None:
            tail_text = render_limited(self._tail, variables, self.name)
        return Rendered(subject=subject, body=text, html=html, tail=tail_text)

    async def render_many(self, many: list[dict[str, Any]], tail: bool = False,
                          counted: bool = True) -> list[Rendered | TemplateError]:
        """Render for each variables dict; a failure is returned in its place (it fails
        that one message, never the whole batch). A merchant body renders in the worker;
        its failures count in stormd_template_failures_total unless not `counted` (a
        check before saving, not a message)."""
        if self.local:
            out: list[Rendered | TemplateError] = []
            for variables in many:
                try:
                    out.append(self.render(variables, tail))
                except TemplateError as exc:
                    out.append(exc)
            return out
        answers = await render_in_worker([Job(self.body, v, tail) for v in many])
        results: list[Rendered | TemplateError] = []
        for answer in answers:
            if isinstance(answer, TemplateError):
                if counted:
                    TEMPLATE_FAILURES.labels(failure_reason(answer)).inc()
                results.append(answer)
            else:
                results.append(Rendered(*answer))
        return results


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


def system_sms_limit(slug: str, channel: str) -> int | None:
    """How many parts a system template's SMS may take (its meta.toml), if said."""
    return system_template(slug).sms_max_segments if channel == "sms" else None


def system_sms_fit(slug: str, channel: str, locale: str, rendered: Rendered) -> dict[str, Any]:
    """`CompiledTemplate.sms_fit` for a system template's SMS (rendered with its tail),
    with its meta's limit."""
    limit = system_sms_limit(slug, channel)
    return compiled_system(slug, channel, locale).sms_fit(limit, rendered) if limit else {}


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
    """A merchant's body: parsed and checked here, compiled and rendered in the worker."""
    return CompiledTemplate(source, name, html_source=html_source, layout=channel == "email",
                            local=False, merchant=True)


def render_template(slug: str, channel: str, locale: str, variables: dict[str, Any],
                    tail: bool = False) -> Rendered:
    """Render a system template for a channel in the customer's locale (else English)."""
    return compiled_system(slug, channel, locale).render(variables, tail)
