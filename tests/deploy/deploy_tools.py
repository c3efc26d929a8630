"""Paths and tool look-ups shared by the deployment files' tests."""

from __future__ import annotations

import ast
import os
import re
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def find_tool(name: str) -> str | None:
    """`name` on PATH, else where tests/system-deps.sh unpacks Debian packages."""
    found = shutil.which(name)
    if found:
        return found
    cached = REPO / ".cache" / "sysdeps" / "usr" / "bin" / name
    return str(cached) if os.access(cached, os.X_OK) else None


# Metrics the daemon is to expose that its source may not define yet, with their labels.
PLANNED_METRICS: dict[str, set[str]] = {
    "stormd_build_info": {"version", "python"},
    "stormd_messages_backlog": {"channel", "state"},
    "stormd_provider_circuit_open": {"provider"},
    "stormd_dead_letters_total": {"type", "reason"},
    "stormd_rfm_runs_total": {"outcome"},
    "stormd_rfm_last_success_timestamp_seconds": set(),
    "stormd_budget_alerts_total": {"store"},
    "stormd_credits_low_total": {"store"},
    "stormd_component_up": {"component"},
}

_KINDS = {"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"}
_SKIP_DIRS = {".git", ".cache", "tests", "build", "dist", ".venv", "node_modules"}


def _metric_sources() -> list[Path]:
    """The project's modules that define Prometheus metrics, wherever they live."""
    found = []
    for path in REPO.rglob("*.py"):
        parts = path.relative_to(REPO).parts
        if _SKIP_DIRS.intersection(parts) or any(p.endswith(".egg-info") for p in parts):
            continue
        text = path.read_text(errors="replace")
        if "prometheus_client" in text and re.search(r"""["']stormd_\w+["']""", text):
            found.append(path)
    return found


def _strings(node: ast.AST | None) -> set[str]:
    if isinstance(node, (ast.List, ast.Tuple)):
        return {e.value for e in node.elts if isinstance(e, ast.Constant)
                and isinstance(e.value, str)}
    return set()


def defined_metrics() -> dict[str, set[str]]:
    """Every series name the daemon's source defines (as exposed: counters with `_total`,
    histograms as `_bucket`/`_sum`/`_count`) with its label names."""
    metrics: dict[str, set[str]] = {}
    for path in _metric_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            kind = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            first = node.args[0]
            if (kind not in _KINDS or not isinstance(first, ast.Constant)
                    or not str(first.value).startswith("stormd_")):
                continue
            labels = _strings(node.args[2]) if len(node.args) > 2 else set()
            for kw in node.keywords:
                if kw.arg == "labelnames":
                    labels = _strings(kw.value)
            name = first.value
            if kind == "Counter":
                names = [name.removesuffix("_total") + "_total"]
            elif kind == "Histogram":
                names = [name + "_bucket", name + "_sum", name + "_count"]
                metrics[name + "_bucket"] = labels | {"le"}
            elif kind == "Summary":
                names = [name, name + "_sum", name + "_count"]
            elif kind == "Info":
                names = [name + "_info"]
            else:
                names = [name]
            for exposed in names:
                metrics.setdefault(exposed, set()).update(labels)
    return metrics


def known_metrics() -> dict[str, set[str]]:
    """Defined and planned metrics, each with the labels a query may use: its own, the
    scrape's `job` and `instance`, and `exported_job` where its own `job` was renamed."""
    metrics = {name: set(labels) for name, labels in defined_metrics().items()}
    for name, labels in PLANNED_METRICS.items():
        metrics.setdefault(name, set()).update(labels)
    for labels in metrics.values():
        if "job" in labels:
            labels.add("exported_job")
        labels.update({"job", "instance"})
    return metrics


METRIC_NAME = re.compile(r"\bstormd_[a-zA-Z0-9_]+")
SELECTOR = re.compile(r"\b(stormd_[a-zA-Z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")


def metric_names(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr))


def selector_labels(expr: str) -> list[tuple[str, str]]:
    """(metric, label) for each label matcher of each `metric{...}` selector."""
    return [(metric, label) for metric, body in SELECTOR.findall(expr)
            for label in MATCHER.findall(body)]


def alert_exprs(path: Path) -> dict[str, str]:
    """Alert name -> expr of a Prometheus rules file (the one-line and `|` block forms)."""
    exprs: dict[str, str] = {}
    lines = path.read_text().splitlines()
    name = None
    for i, line in enumerate(lines):
        if m := re.match(r"\s*- alert:\s*(\S+)", line):
            name = m.group(1)
        elif (m := re.match(r"(\s*)expr:\s*(.*)$", line)) and name:
            indent, rest = len(m.group(1)), m.group(2).strip()
            if rest in ("|", "|-", ">", ">-"):
                body = []
                for follow in lines[i + 1:]:
                    if follow.strip() and len(follow) - len(follow.lstrip()) <= indent:
                        break
                    body.append(follow.strip())
                rest = " ".join(body).strip()
            exprs[name] = rest
    return exprs
