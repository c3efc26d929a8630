"""The render worker process itself (render_worker.py starts it and talks to it):
`python -m stormd.handlers.outreach.render_process`.

It caps its own memory where it may, lowers its priority, then reads pickled batches of
merchant bodies and variables from stdin and answers each with one JSON frame on stdout:
`{"r": [subject, body, html, tail]}`, or `{"e": reason, "l": limit}`. A body that ran into
the time or memory limit is not rendered again in the same batch. It stops when the daemon
closes its stdin.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from collections import OrderedDict
from typing import Any

from stormd.handlers.outreach.render_worker import FRAME, MEMORY_LIMIT, Body
from stormd.handlers.outreach.sandbox import TemplateError, TemplateLimitExceeded
from stormd.handlers.outreach.templates import CompiledTemplate

COMPILED_KEEP = 64  # compiled bodies a worker keeps


def _limit_memory() -> None:
    import resource

    with open("/proc/self/statm") as f:  # pages of address space in use now
        size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (size + MEMORY_LIMIT, size + MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _serve() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(10)  # the daemon's own work (other stores, /healthz) goes first
    except OSError:
        pass
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    compiled: OrderedDict[str, Any] = OrderedDict()

    def send(obj: Any) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")
        stdout.write(FRAME.pack(len(data)) + data)
        stdout.flush()

    def template(body: Body) -> Any:
        found = compiled.get(body.key)
        if found is None:
            found = CompiledTemplate(body.source, body.name, html_source=body.html_source,
                                     layout=body.layout, merchant=True)
            compiled[body.key] = found
            while len(compiled) > COMPILED_KEEP:
                compiled.popitem(last=False)
        else:
            compiled.move_to_end(body.key)
        return found

    try:
        _limit_memory()
    except (OSError, ValueError):  # no /proc or no rlimits here: the deadline still holds
        pass
    send({"ready": True})
    while True:
        head = stdin.read(FRAME.size)
        if len(head) < FRAME.size:
            return  # the daemon went away
        (size,) = FRAME.unpack(head)
        jobs = pickle.loads(stdin.read(size))
        breached: dict[str, dict[str, str]] = {}  # a body that hit time or memory: once
        for body, variables, tail in jobs:
            if body.key in breached:
                send(breached[body.key])
                continue
            try:
                t = template(body)
                rendered = t.render(variables, tail=tail)
                send({"r": [rendered.subject, rendered.body, rendered.html, rendered.tail]})
            except TemplateLimitExceeded as exc:
                send({"e": str(exc), "l": exc.limit})
                if exc.limit in ("time", "memory"):
                    breached[body.key] = {"e": str(exc), "l": exc.limit}
            except TemplateError as exc:
                send({"e": str(exc)})
            except MemoryError:
                compiled.clear()
                breached[body.key] = {"e": f"{body.name}: out of memory (memory limit)",
                                      "l": "memory"}
                send(breached[body.key])
            except RecursionError:
                send({"e": f"{body.name}: nested too deep (recursion limit)",
                      "l": "recursion"})
            except Exception as exc:  # compile-time surprises: a message, not a traceback
                send({"e": f"{body.name}: {type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    _serve()
