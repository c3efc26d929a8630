"""The template sandboxes: Jinja2's immutable sandbox with limits no expression can pass.

Jinja2's ImmutableSandboxedEnvironment keeps a template away from Python's internals (no
`__class__`, no `_private` attribute, no mutation of the data it is given) but not from
the machine: one `((10**1000)**1000)**20` is a single multiplication in C that ran 24.8 s
of CPU, `lipsum(60000)` or a `replace` that multiplies a string build gigabytes, and
Jinja2 folds constant filter calls while *compiling*. So every operation that can build a
big value is checked before it runs, and every value it gives is checked after:

- integers up to 10^30 (`MAX_INTEGER`): `*` and `**` are refused before they compute more;
- a string built in a template up to `MAX_STRING` characters, a list, tuple or dict up to
  `MAX_ITEMS` items; padding widths (`center`, `indent`, `wordwrap`, `truncate`, format
  specs, `%` widths, `str.center`/`ljust`/`zfill`, ...) up to `MAX_WIDTH`;
- `range` up to `MAX_RANGE` numbers, `lipsum` up to 10 paragraphs; every loop iteration,
  call, attribute, item and output chunk ticks the CPU budget (`RENDER_SECONDS` of the
  thread's CPU time per render) and counts towards `MAX_ITERATIONS`;
- macros (and `caller()`) nest at most `MAX_CALL_DEPTH` calls deep;
- no constant folding at compile time (every filter and test is context-bound, every
  binary operator intercepted), no `include`/`import`/`extends` (refused when saved);
- the output is streamed and cut at `MAX_OUTPUT_CHARS`.

A breach raises `TemplateLimitExceeded` naming the limit. All of this is the
`MerchantSandbox`, for a store's own templates, which also render in a worker process with
a deadline and a memory cap (render_worker.py): whatever these checks miss, the process
limits catch, and the event loop never waits on them. The system templates are our own
code: they render in the daemon in the lighter `StormSandbox` (the CPU budget, `range`, `*`
and `**` bounded, the output cap), which costs cart recovery a fifth less per message
(22.7 against 29.1 µs for a cart reminder).
"""

from __future__ import annotations

import operator
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, nodes
from jinja2.compiler import CodeGenerator
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, generate_lorem_ipsum
from markupsafe import Markup

RENDER_SECONDS = 0.5  # CPU per message; a template that loops longer is refused
MAX_OUTPUT_CHARS = 100_000  # an email body past this is a template bug, not a message
MAX_STRING = MAX_OUTPUT_CHARS  # any string a template builds
MAX_ITEMS = 10_000  # any list, tuple or dict a template builds
MAX_RANGE = 10_000
MAX_INTEGER = 10**30
MAX_WIDTH = 1_000  # padding, indent, wrap and format widths
MAX_CALL_DEPTH = 20  # macro / caller() nesting
MAX_ITERATIONS = 1_000_000  # loop iterations per render, all loops together
MAX_LIPSUM = 10  # paragraphs
MAX_SOURCE_CHARS = 65_536  # a merchant body, refused when saved


class TemplateError(Exception):
    """A template that cannot be rendered: unknown, unsafe, or missing a variable."""


class TemplateLimitExceeded(TemplateError):
    """The render ran into one of the limits; `limit` names it (time, output, number,
    sequence, recursion, memory)."""

    def __init__(self, message: str, limit: str = "output"):
        super().__init__(message)
        self.limit = limit


class RenderTimeout(TemplateLimitExceeded):
    """The render ran past the time limit."""

    def __init__(self, message: str):
        super().__init__(message, "time")


def _refuse(what: str, limit: str) -> TemplateLimitExceeded:
    return TemplateLimitExceeded(what, limit)


class _Budget:
    """The time left to the render in progress, its loop iterations and call depth (one
    render at a time per thread of rendering). Counted in the thread's CPU time: a loaded
    machine descheduling the daemon is not the template's fault."""

    deadline: float = float("inf")
    ticks: int = 0
    iterations: int = 0
    depth: int = 0

    def start(self) -> None:
        self.deadline = time.thread_time() + RENDER_SECONDS
        self.iterations = self.depth = 0

    def stop(self) -> None:
        self.deadline = float("inf")

    def check(self) -> None:
        # Reading the clock is a system call: look every 32nd operation (a runaway loop
        # does millions, an ordinary message a few dozen).
        self.ticks += 1
        if self.ticks & 31:
            return
        if time.thread_time() > self.deadline:
            raise RenderTimeout(f"template ran longer than {RENDER_SECONDS}s of CPU "
                                "(time limit)")


budget = _Budget()


# --- values ------------------------------------------------------------------------------


def checked(value: Any) -> Any:
    """The value, if it is within the limits (a few type checks: called on every result)."""
    kind = type(value)
    if kind is int:
        if -MAX_INTEGER <= value <= MAX_INTEGER:
            return value
        raise _refuse("a number beyond 10^30 (number limit)", "number")
    if kind is str or kind is Markup or kind is bytes:
        if len(value) > MAX_STRING:
            raise _refuse(f"a string of {len(value):,} characters, over {MAX_STRING:,} "
                          "(output limit)", "output")
    elif kind is list or kind is tuple or kind is dict or kind is set:
        if len(value) > MAX_ITEMS:
            raise _refuse(f"a sequence of {len(value):,} items, over {MAX_ITEMS:,} "
                          "(sequence limit)", "sequence")
    return value


def _length(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes)) else len(str(value))


def _fits(estimate: int, what: str) -> None:
    if estimate > MAX_STRING:
        raise _refuse(f"{what} would build {estimate:,} characters, over {MAX_STRING:,} "
                      "(output limit)", "output")


def _width(width: Any, what: str) -> None:
    if isinstance(width, int) and not isinstance(width, bool) and width > MAX_WIDTH:
        raise _refuse(f"{what} width {width} is over {MAX_WIDTH} (output limit)", "output")


def _replaced_length(s: Any, old: Any, new: Any, count: Any = None) -> int:
    s, old, new = str(s), str(old), str(new)
    hits = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(s) + hits * (len(new) - len(old))


def _joined_length(items: Iterable[Any], sep: Any) -> int:
    total, n = 0, 0
    for item in items:
        total += _length(item)
        n += 1
        if total > MAX_STRING:
            break
    return total + max(n - 1, 0) * len(str(sep))


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]")


def _percent_widths(fmt: str) -> None:
    """Refuse a printf-style format whose width or precision is over MAX_WIDTH."""
    for match in _PERCENT_SPEC.finditer(fmt):
        for group in match.groups():
            if group == "*":
                raise _refuse("a '*' width in a % format is not allowed", "output")
            if group and int(group) > MAX_WIDTH:
                raise _refuse(f"% format width {group} is over {MAX_WIDTH} (output limit)",
                              "output")


_SPEC_NUMBERS = re.compile(r"\d+")


def _format_widths(fmt: str) -> None:
    """Refuse a str.format() string with a nested or over-wide format spec."""
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError as exc:
        raise TemplateError(f"bad format string: {exc}") from None
    for _, _, spec, _ in fields:
        if not spec:
            continue
        if "{" in spec:
            raise _refuse("nested fields in a format spec are not allowed", "output")
        for number in _SPEC_NUMBERS.findall(spec):
            if int(number) > MAX_WIDTH:
                raise _refuse(f"format width {number} is over {MAX_WIDTH} (output limit)",
                              "output")


# --- the environment ----------------------------------------------------------------------


class _GuardedCode(CodeGenerator):
    """Compiles every loop over `environment.loop_guard(...)` (budget and iteration count
    per item) and every `~` through `environment.joined(...)` (size checked first)."""

    def visit_For(self, node: nodes.For, frame: Any) -> None:
        if not getattr(node, "stormd_guarded", False):
            node.iter = nodes.Call(nodes.EnvironmentAttribute("loop_guard"), [node.iter], [],
                                   None, None, lineno=node.lineno)
            node.stormd_guarded = True  # type: ignore[attr-defined]
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Any) -> None:
        self.write("environment.joined(")
        super().visit_Concat(node, frame)
        self.write(")")


class _Namespace(Namespace):
    """`namespace()` whose attributes are checked when set (`{% set ns.x = ... %}`)."""

    def __setitem__(self, name: str, value: Any) -> None:
        Namespace.__setitem__(self, name, checked(value))


def _checked_range(*args: int) -> Iterator[int]:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise _refuse(f"range of {len(r):,} is over the limit of {MAX_RANGE:,} "
                      "(sequence limit)", "sequence")
    for i in r:
        budget.check()
        yield i


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> Markup | str:
    if not all(isinstance(v, int) for v in (n, min, max)) or not (
            0 <= n <= MAX_LIPSUM and 1 <= min <= max <= 100):
        raise _refuse(f"lipsum takes at most {MAX_LIPSUM} paragraphs of at most 100 words "
                      "(output limit)", "output")
    return generate_lorem_ipsum(n, html, min, max)


def _taka(value: Any) -> str:
    return f"৳{float(value):,.0f}"


# Pre-checks of the filters that can build a big value from small arguments.
def _pre_replace(args: tuple, kwargs: dict) -> None:
    if len(args) >= 3:
        _fits(_replaced_length(*args[:4]), "replace")


def _pre_width(name: str, position: int) -> Callable[[tuple, dict], None]:
    def check(args: tuple, kwargs: dict) -> None:
        width = args[position] if len(args) > position else kwargs.get("width",
                                                                         kwargs.get("length"))
        _width(width, name)
        if name == "indent" and isinstance(width, int) and args:
            _fits(len(str(args[0])) + (str(args[0]).count("\n") + 1) * width, "indent")

    return check


def _pre_count(name: str) -> Callable[[tuple, dict], None]:
    def check(args: tuple, kwargs: dict) -> None:
        n = args[1] if len(args) > 1 else next(iter(kwargs.values()), None)
        if isinstance(n, int) and n > MAX_ITEMS:
            raise _refuse(f"{name} of {n:,} is over {MAX_ITEMS:,} (sequence limit)", "sequence")

    return check


def _pre_format(args: tuple, kwargs: dict) -> None:
    if args:
        _percent_widths(str(args[0]))


_FILTER_CHECKS: dict[str, Callable[[tuple, dict], None]] = {
    "replace": _pre_replace, "format": _pre_format,
    "center": _pre_width("center", 1), "indent": _pre_width("indent", 1),
    "truncate": _pre_width("truncate", 1), "wordwrap": _pre_width("wordwrap", 1),
    "batch": _pre_count("batch"), "slice": _pre_count("slice"),
}


def _guard_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """The filter bound to the render's context (so never folded at compile time), with
    the budget ticked, its pre-check (if any) run, and its result checked."""
    passes = getattr(getattr(fn, "jinja_pass_arg", None), "name", None)
    pre = _FILTER_CHECKS.get(name)

    def guarded(context: Any, *args: Any, **kwargs: Any) -> Any:
        budget.check()
        if pre is not None:
            pre(args, kwargs)
        if name == "join" and args:
            items = list(args[0])
            sep = args[1] if len(args) > 1 else kwargs.get("d", "")
            if "attribute" not in kwargs and len(args) < 3:
                _fits(_joined_length(items, sep), "join")
            args = (items, *args[1:])
        if passes == "context":
            result = fn(context, *args, **kwargs)
        elif passes == "eval_context":
            result = fn(context.eval_ctx, *args, **kwargs)
        elif passes == "environment":
            result = fn(context.environment, *args, **kwargs)
        else:
            result = fn(*args, **kwargs)
        return checked(result)

    guarded.jinja_pass_arg = _CONTEXT  # type: ignore[attr-defined]
    guarded.__name__ = getattr(fn, "__name__", name)
    return guarded


def _context_marker() -> Any:
    from jinja2 import pass_context

    @pass_context
    def probe(context: Any) -> None:  # pragma: no cover - only its marker is read
        return None

    return probe.jinja_pass_arg  # type: ignore[attr-defined]


_CONTEXT = _context_marker()


# Method calls on strings (and bytes, ints) that build big values from small arguments.
def _check_method(obj: Any, args: tuple, kwargs: dict) -> None:
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, (str, bytes)):
        if name in ("center", "ljust", "rjust", "zfill") and args:
            _width(args[0], f"str.{name}")
        elif name == "expandtabs":
            size = args[0] if args else kwargs.get("tabsize", 8)
            if isinstance(size, int):
                _fits(len(owner) + owner.count("\t" if isinstance(owner, str) else b"\t")
                      * size, "expandtabs")
        elif name == "replace" and len(args) >= 2:
            _fits(_replaced_length(owner, *args[:3]), "replace")
        elif name == "join" and args:
            _fits(_joined_length(list(args[0]), owner), "join")
    elif isinstance(owner, int) and name == "to_bytes" and args:
        if isinstance(args[0], int) and args[0] > MAX_STRING:
            raise _refuse("to_bytes length over the output limit", "output")


class StormSandbox(ImmutableSandboxedEnvironment):
    """The sandbox of the system templates (our code, the customers' data): the budget
    ticked on every call, attribute and item, `*` and `**` bounded, `range` capped. Cheap:
    cart recovery renders thousands a second through it."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        budget.check()
        if operator_ == "**":
            if (isinstance(left, int) and isinstance(right, int) and right > 0
                    and abs(left) > 1 and (abs(left).bit_length() - 1) * right
                    > MAX_INTEGER.bit_length()):
                raise _refuse(f"{left} ** {right} is beyond 10^30 (number limit)", "number")
            return checked(operator.pow(left, right))
        if operator_ == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int):
                    limit = MAX_STRING if isinstance(seq, (str, bytes)) else MAX_ITEMS
                    if len(seq) * n > limit:
                        raise _refuse(f"repeating {len(seq):,} items {n:,} times is over "
                                      f"{limit:,} (sequence limit)", "sequence")
            if (isinstance(left, int) and isinstance(right, int)
                    and abs(left).bit_length() + abs(right).bit_length()
                    > MAX_INTEGER.bit_length() + 1):
                raise _refuse("a product beyond 10^30 (number limit)", "number")
            return checked(operator.mul(left, right))
        return super().call_binop(context, operator_, left, right)

    def call(__self, __context: Any, __obj: Any, /, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget.check()
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        budget.check()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        budget.check()
        return super().getitem(obj, argument)


class MerchantSandbox(StormSandbox):
    """The sandbox of a store's own templates (the merchant's code): every operator, call,
    filter, loop and `~` checked as the module says, nothing folded while compiling."""

    code_generator_class = _GuardedCode
    intercepted_binops = frozenset({"*", "**", "+", "-", "/", "//", "%"})
    intercepted_unops = frozenset({"-", "+"})

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ in ("*", "**"):
            return super().call_binop(context, operator_, left, right)
        budget.check()
        if operator_ == "+" and isinstance(left, (str, bytes, list, tuple)) and isinstance(
                right, (str, bytes, list, tuple)):
            limit = MAX_STRING if isinstance(left, (str, bytes)) else MAX_ITEMS
            if len(left) + len(right) > limit:
                raise _refuse(f"joining {len(left) + len(right):,} items is over {limit:,} "
                              "(sequence limit)", "sequence")
        if operator_ == "%" and isinstance(left, str):
            _percent_widths(left)
        return checked(ImmutableSandboxedEnvironment.call_binop(
            self, context, operator_, left, right))

    def call_unop(self, context: Any, operator_: str, arg: Any) -> Any:
        budget.check()
        return super().call_unop(context, operator_, arg)

    def call(__self, __context: Any, __obj: Any, /, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget.check()
        _check_method(__obj, args, kwargs)
        for value in args:
            checked(value)
        budget.depth += 1
        try:
            if budget.depth > MAX_CALL_DEPTH:
                raise _refuse(f"calls nested over {MAX_CALL_DEPTH} deep (a macro calling "
                              "itself?) (recursion limit)", "recursion")
            return checked(ImmutableSandboxedEnvironment.call(
                __self, __context, __obj, *args, **kwargs))
        finally:
            budget.depth -= 1

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        _format_widths(value.__self__)
        return wrapped

    def loop_guard(self, iterable: Any) -> Iterator[Any]:
        """Every loop's iterable: each item ticks the budget and counts towards
        MAX_ITERATIONS."""
        for item in iterable:
            budget.iterations += 1
            if budget.iterations > MAX_ITERATIONS:
                raise _refuse(f"loops ran over {MAX_ITERATIONS:,} iterations (time limit)",
                              "time")
            budget.check()
            yield item

    def joined(self, value: Any) -> Any:
        return checked(value)


def make_sandbox(autoescape: bool, merchant: bool = False) -> StormSandbox:
    """The system templates' sandbox, or (merchant) a store's templates' one."""
    env = (MerchantSandbox if merchant else StormSandbox)(
        undefined=StrictUndefined, autoescape=autoescape, keep_trailing_newline=False)
    env.filters["taka"] = _taka
    env.globals["range"] = _checked_range
    env.globals["lipsum"] = _lipsum
    env.globals["namespace"] = _Namespace
    if merchant:
        for name, fn in list(env.filters.items()):
            env.filters[name] = _guard_filter(name, fn)
        for name, fn in list(env.tests.items()):
            env.tests[name] = _guard_filter(name, fn)
    return env


# --- rendering ------------------------------------------------------------------------------


def render_limited(template: Any, variables: dict[str, Any], name: str) -> str:
    """Render under the limits; any failure is a TemplateError naming the template (and
    the line, where known)."""
    try:
        return _render_once(template, variables, name)
    except RenderTimeout:
        # Once more: a garbage collection of a big heap can eat the budget of an innocent
        # render; a template that really loops fails again.
        return _render_once(template, variables, name)


def _render_once(template: Any, variables: dict[str, Any], name: str) -> str:
    budget.start()
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
                raise TemplateLimitExceeded(f"output over {MAX_OUTPUT_CHARS:,} characters "
                                            "(output limit)", "output")
            append(chunk)
            budget.check()
    except RenderTimeout as exc:
        raise RenderTimeout(located(template, exc, name)) from None
    except TemplateLimitExceeded as exc:
        raise TemplateLimitExceeded(located(template, exc, name), exc.limit) from None
    except TemplateError as exc:
        raise TemplateError(located(template, exc, name)) from None
    except UndefinedError as exc:
        raise TemplateError(located(template, exc, name, "missing variable: ")) from None
    except SecurityError as exc:
        raise TemplateError(located(template, exc, name, "refused by the sandbox: ")) from None
    except RecursionError as exc:
        raise TemplateLimitExceeded(located(template, exc, name, "nested too deep: ")
                                    + " (recursion limit)", "recursion") from None
    except MemoryError as exc:
        raise TemplateLimitExceeded(located(template, exc, name, "out of memory")
                                    + " (memory limit)", "memory") from None
    except Exception as exc:  # anything a template can raise: its message, never a traceback
        raise TemplateError(located(template, exc, name, f"{type(exc).__name__}: ")) from None
    finally:
        budget.stop()
    return "".join(parts).strip()


def located(template: Any, exc: BaseException, name: str, prefix: str = "") -> str:
    """`name: line N: prefix message`, the line found in the traceback's template frames
    (the innermost)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            try:
                line = template.get_corresponding_lineno(tb.tb_lineno)
            except Exception:  # pragma: no cover - debug info is best effort
                pass
        tb = tb.tb_next
    message = getattr(exc, "message", None) or str(exc)
    where = f"{name}: line {line}: " if line else f"{name}: "
    return f"{where}{prefix}{message}"


def syntax_error(exc: TemplateSyntaxError | JinjaTemplateError, name: str) -> TemplateError:
    line = getattr(exc, "lineno", None)
    message = getattr(exc, "message", None) or str(exc)
    return TemplateError(f"{name}: syntax error on line {line}: {message}" if line
                         else f"{name}: {message}")
