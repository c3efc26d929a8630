"""deploy/grafana/stormd.json: a dashboard Grafana imports as it is (its JSON model, the
Prometheus data source chosen through a variable, only panels Grafana ships with), whose
queries, like those of deploy/prometheus/alerts.yml, name only metrics and labels the daemon
defines (its metrics module, found by content since modules move) or is to define (the list
in deploy_tools.PLANNED_METRICS), and parse as PromQL (`promtool check rules`)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from deploy_tools import (
    DEPLOY,
    alert_exprs,
    defined_metrics,
    known_metrics,
    metric_names,
    selector_labels,
)

DASHBOARD = DEPLOY / "grafana" / "stormd.json"
RULES = DEPLOY / "prometheus" / "alerts.yml"

# Panel types that come with Grafana itself (no plugin to install).
CORE_PANELS = {"row", "timeseries", "stat", "table", "bargauge", "gauge", "state-timeline",
               "status-history", "barchart", "heatmap", "histogram", "piechart", "text"}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict) -> list[dict]:
    """Every panel but rows, nested ones (inside collapsed rows) included."""
    out = []
    for panel in dashboard["panels"]:
        out.extend(panel.get("panels", []))
        if panel["type"] != "row":
            out.append(panel)
    return out


def exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p["targets"]]


def test_dashboard_is_an_importable_model(dashboard):
    assert dashboard["uid"] == "stormd" and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    source = variables["datasource"]
    assert source["type"] == "datasource" and source["query"] == "prometheus"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "${datasource}", var["name"]
    ids = [p["id"] for p in dashboard["panels"] + [q for p in dashboard["panels"]
                                                   for q in p.get("panels", [])]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    assert {p["type"] for p in dashboard["panels"]} <= CORE_PANELS
    required = {r["id"] for r in dashboard.get("__requires", []) if r["type"] == "panel"}
    assert required <= CORE_PANELS


def test_every_panel_queries_the_chosen_prometheus(dashboard):
    for panel in panels(dashboard):
        title = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["targets"], title
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), title
        for target in panel["targets"]:
            assert target["expr"].strip(), title
            assert target.get("datasource", panel["datasource"]) == panel["datasource"], title


def test_panels_fit_the_grid_without_overlapping(dashboard):
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_dashboard_shows_what_operators_watch(dashboard):
    named = set().union(*(metric_names(e) for e in exprs(dashboard)))
    for metric in ("stormd_events_total", "stormd_event_seconds_bucket", "stormd_mailbox_depth",
                   "stormd_messages_backlog", "stormd_messages_total",
                   "stormd_provider_circuit_open", "stormd_dead_letters_total",
                   "stormd_rfm_run_seconds_sum", "stormd_rfm_last_success_timestamp_seconds",
                   "stormd_segment_members", "stormd_kpi", "stormd_component_up",
                   "stormd_build_info"):
        assert metric in named, metric
    all_exprs = " ".join(exprs(dashboard))
    assert "histogram_quantile(0.5," in all_exprs and "histogram_quantile(0.99," in all_exprs


def test_the_metrics_module_is_found():
    """The union below rests on reading the daemon's metric definitions."""
    defined = defined_metrics()
    assert {"stormd_events_total", "stormd_event_seconds_bucket", "stormd_mailbox_depth",
            "stormd_messages_total", "stormd_segment_members"} <= set(defined)
    assert {"type", "outcome"} <= defined["stormd_events_total"]


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_queries_name_only_known_metrics_and_labels(dashboard, source):
    queries = exprs(dashboard) if source == "dashboard" else list(alert_exprs(RULES).values())
    if source == "dashboard":
        queries += [v["definition"] for v in dashboard["templating"]["list"]
                    if v["type"] == "query"]
    known = known_metrics()
    unknown = {m for q in queries for m in metric_names(q)} - set(known)
    assert unknown == set(), "metrics neither defined nor planned"
    wrong = {(m, label) for q in queries for m, label in selector_labels(q)
             if label not in known.get(m, set())}
    assert wrong == set(), "label matchers on labels the metric does not have"


GRAFANA_VARIABLES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h",
                     "job": ".*", "instance": ".*", "store": ".*"}


def as_promql(expr: str) -> str:
    """Grafana's variables replaced the way Grafana would before sending the query."""
    def value(m: re.Match) -> str:
        return GRAFANA_VARIABLES[m.group(1) or m.group(2)]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def test_dashboard_queries_are_valid_promql(dashboard, promtool, tmp_path):
    """Each query, its variables filled in, as a recording rule that promtool parses."""
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(exprs(dashboard)):
        rules += [f"      - record: dashboard:query_{i}", f"        expr: {json.dumps(as_promql(expr))}"]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text("\n".join(rules) + "\n")
    run = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
