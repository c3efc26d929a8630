"""Merchant templates render in a worker process, never on the event loop.

A store's own template is code a merchant wrote. The sandbox (sandbox.py) bounds every
operation it knows of, but one C-level operation it does not know of could still hold the
interpreter for seconds or take gigabytes. So merchant bodies are compiled and rendered in
a child process (`python -m stormd.handlers.outreach.render_process`) with:

- a deadline: `JOB_SECONDS` of wall time per body; past it the worker is killed (and
  started again for the next one) and that render fails with the time limit;
- a memory cap: the worker may grow `MEMORY_LIMIT` bytes past what it has at start. It
  caps its own address space (RLIMIT_AS) where it may (a render then fails with a
  MemoryError), and the daemon watches its resident memory while it waits, killing it past
  the cap (under the systemd unit's system-call filter the worker may not set limits);
- the sandbox's own limits inside, which give the clearer message when they apply.

The daemon awaits the worker from a thread of its own, so the event loop keeps
answering (`/healthz`, other stores) while a render runs. Requests go to the worker as
pickles (we wrote them); answers come back as JSON (a worker is never trusted to send
objects). A template that hit the time or memory limit fails fast for `BREAKER_SECONDS`
after: a hostile body costs one deadline, not one per customer.

System templates (handlers/outreach/library/) are ours: they render in the daemon, in the
lighter sandbox, at thousands a second (cart recovery).
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import json
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from stormd.handlers.outreach.sandbox import TemplateError, TemplateLimitExceeded

JOB_SECONDS = 5.0  # wall time one body may take in the worker (CPU budget: 0.5 s, twice)
MEMORY_LIMIT = 256 * 1024 * 1024  # bytes of address space a worker may add to its start
BREAKER_SECONDS = 300.0
STARTUP_SECONDS = 30.0
FRAME = struct.Struct(">I")
_WATCH = 0.02  # seconds between looks at a rendering worker's memory


@dataclass(frozen=True)
class Body:
    """One merchant channel body, as the worker compiles it."""

    source: str
    name: str
    html_source: str | None = None
    layout: bool = False

    @property
    def key(self) -> str:
        digest = hashlib.sha256()
        for part in (self.source, self.html_source or "", "1" if self.layout else "0"):
            digest.update(part.encode("utf-8", "surrogatepass"))
            digest.update(b"\0")
        return digest.hexdigest()


@dataclass(frozen=True)
class Job:
    body: Body
    variables: dict[str, Any]
    tail: bool = False  # also render the part after the body's {# sms_tail #} mark


class RenderWorker:
    """One worker process, started on first use and again after a kill; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._rss_cap = 0  # bytes of resident memory past which the worker is killed
        self._broken: dict[str, tuple[float, str, str]] = {}  # key -> (until, message, limit)

    def render(self, jobs: list[Job]) -> list[Any]:
        """Each job's answer, in order: (subject, body, html, tail), or the TemplateError
        that refused it (blocking: call it from a thread)."""
        with self._lock:
            answers: list[Any] = [None] * len(jobs)
            todo = list(range(len(jobs)))
            while todo:
                todo = self._run(jobs, todo, answers)
            return answers

    def _run(self, jobs: list[Job], todo: list[int], answers: list[Any]) -> list[int]:
        """Send the jobs still to do; returns those left when the worker had to go."""
        now = time.monotonic()
        send = []
        for i in todo:
            broken = self._broken.get(jobs[i].body.key)
            if broken and broken[0] > now:
                answers[i] = TemplateLimitExceeded(
                    f"{jobs[i].body.name}: {broken[1]} (refused again for "
                    f"{BREAKER_SECONDS:.0f}s after a breach)", broken[2])
            else:
                send.append(i)
        if not send:
            return []
        try:
            payload = pickle.dumps([(jobs[i].body, jobs[i].variables, jobs[i].tail)
                                    for i in send], protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # a value the worker cannot be given
            return self._give_up(jobs, send, answers, f"variables cannot be rendered ({exc})",
                                 "error")
        try:
            proc = self._started()
            proc.stdin.write(FRAME.pack(len(payload)) + payload)
            proc.stdin.flush()
        except (OSError, ValueError) as exc:
            self._stop()
            return self._give_up(jobs, send, answers, f"the render worker failed to start "
                                                      f"or stopped ({exc})", "error")
        for n, i in enumerate(send):
            try:
                answers[i] = _answer(self._read(proc, JOB_SECONDS, self._rss_cap),
                                     jobs[i].body.name)
            except MemoryError:
                self._stop()
                answers[i] = self._breach(jobs[i].body, f"grew past "
                                                        f"{MEMORY_LIMIT // 2**20} MB (memory "
                                                        "limit)", "memory")
                return send[n + 1:]
            except TimeoutError:
                self._stop()
                answers[i] = self._breach(jobs[i].body, f"ran past its {JOB_SECONDS:.0f}s "
                                                        "deadline (time limit)", "time")
                return send[n + 1:]
            except (OSError, EOFError, ValueError):
                self._stop()
                answers[i] = self._breach(jobs[i].body, "stopped the render worker (memory "
                                                        "limit)", "memory")
                return send[n + 1:]
            if isinstance(answers[i], TemplateLimitExceeded) and answers[i].limit in (
                    "time", "memory"):
                self._breach(jobs[i].body, str(answers[i]).removeprefix(
                    f"{jobs[i].body.name}: "), answers[i].limit)
        return []

    def _breach(self, body: Body, message: str, limit: str) -> TemplateLimitExceeded:
        if len(self._broken) > 1000:
            now = time.monotonic()
            self._broken = {k: v for k, v in self._broken.items() if v[0] > now}
        self._broken[body.key] = (time.monotonic() + BREAKER_SECONDS, message, limit)
        return TemplateLimitExceeded(f"{body.name}: {message}", limit)

    @staticmethod
    def _give_up(jobs: list[Job], send: list[int], answers: list[Any], message: str,
                 limit: str) -> list[int]:
        for i in send:
            answers[i] = TemplateLimitExceeded(f"{jobs[i].body.name}: {message}", limit)
        return []

    def _started(self) -> subprocess.Popen:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "stormd.handlers.outreach.render_process"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            close_fds=True, start_new_session=True)  # a Ctrl-C meant for the daemon is not its
        if self._read(self._proc, STARTUP_SECONDS) != {"ready": True}:
            raise OSError("the render worker did not start")
        self._rss_cap = (_resident(self._proc.pid) or 0) + MEMORY_LIMIT
        return self._proc

    @staticmethod
    def _read(proc: subprocess.Popen, seconds: float, rss_cap: int = 0) -> Any:
        """One JSON frame from the worker within `seconds` (TimeoutError), its resident
        memory under `rss_cap` meanwhile (MemoryError)."""
        deadline = time.monotonic() + seconds
        fd = proc.stdout.fileno()

        def take(n: int) -> bytes:
            data = b""
            while len(data) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                if not select.select([fd], [], [], min(left, _WATCH))[0]:
                    if rss_cap and (_resident(proc.pid) or 0) > rss_cap:
                        raise MemoryError
                    continue
                chunk = os.read(fd, n - len(data))
                if not chunk:
                    raise EOFError
                data += chunk
            return data

        (size,) = FRAME.unpack(take(FRAME.size))
        return json.loads(take(size))

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass

    def close(self) -> None:
        with self._lock:
            self._stop()


def _resident(pid: int) -> int | None:
    """Bytes of resident memory of a process (None where /proc is not there)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _answer(frame: Any, name: str) -> Any:
    if not isinstance(frame, dict):
        raise ValueError("not an answer")
    if "r" in frame:
        subject, body, html, tail = frame["r"]
        return (subject, body, html, tail)
    message = str(frame.get("e", "failed"))
    limit = frame.get("l")
    if limit:
        return TemplateLimitExceeded(message, str(limit))
    return TemplateError(message)


_worker = RenderWorker()
atexit.register(_worker.close)
# The thread that waits on the worker: its own, so renders queued behind a slow one never
# hold the default executor the rest of the daemon uses (name lookups, files).
_waiter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stormd-render")


async def render_in_worker(jobs: list[Job]) -> list[Any]:
    """Render merchant bodies in the worker without holding the event loop."""
    if not jobs:
        return []
    return await asyncio.get_running_loop().run_in_executor(_waiter, _worker.render, jobs)


def close_worker() -> None:
    """Stop the worker (it starts again on the next render)."""
    _worker.close()
