"""deploy/prometheus/alerts.yml: valid for Prometheus (`promtool check rules`), and each alert
fires on the series it is meant for and stays quiet on the others (`promtool test rules`
with deploy/prometheus/alerts_test.yml). promtool is Prometheus's own checker, from Debian's
`prometheus` package (tests/system-deps.sh)."""

from __future__ import annotations

import re
import shutil
import subprocess

from deploy_tools import DEPLOY, alert_exprs

RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"


def promtool_run(promtool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120)


def test_rules_pass_promtool_check(promtool, tmp_path):
    run = promtool_run(promtool, "check", "rules", str(RULES))
    assert run.returncode == 0, run.stdout + run.stderr
    count = int(re.search(r"SUCCESS: (\d+) rules found", run.stdout).group(1))
    assert count == len(alert_exprs(RULES))

    # A rule with a broken expression is refused: the check reads the expressions.
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n"
                   "        expr: sum by (job (stormd_nats_connected)\n")
    assert promtool_run(promtool, "check", "rules", str(bad)).returncode != 0


def test_rule_unit_tests_pass(promtool):
    run = promtool_run(promtool, "test", "rules", str(RULE_TESTS))
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_wrong_expectation_fails_the_unit_tests(promtool, tmp_path):
    """The unit tests compare what fires with what is expected: expecting the NATS alert on
    the daemon that stayed connected fails them."""
    shutil.copy(RULES, tmp_path / "alerts.yml")
    text = RULE_TESTS.read_text()
    wrong = "exp_labels: {severity: critical, job: stormd, instance: d2}"
    text = text.replace("exp_labels: {severity: critical, job: stormd, instance: d1}", wrong, 1)
    assert wrong in text
    (tmp_path / "alerts_test.yml").write_text(text)
    run = promtool_run(promtool, "test", "rules", str(tmp_path / "alerts_test.yml"))
    assert run.returncode != 0 and "StormdNatsDisconnected" in run.stdout + run.stderr


def test_every_alert_is_tested_firing_and_quiet():
    """Each alert has a case where it fires and one where it must not."""
    firing: set[str] = set()
    quiet: set[str] = set()
    current = None
    for line in RULE_TESTS.read_text().splitlines():
        if m := re.match(r"\s*- alertname:\s*(\S+)", line):
            current = m.group(1)
        elif m := re.match(r"\s*exp_alerts:\s*(\[\])?\s*$", line):
            (quiet if m.group(1) else firing).add(current)
    alerts = set(alert_exprs(RULES))
    assert alerts - firing == set(), "never seen firing"
    assert alerts - quiet == set(), "never checked quiet"
    assert (firing | quiet) - alerts == set(), "tests of alerts that do not exist"


def test_alerts_say_how_bad_and_what_happened():
    text = RULES.read_text()
    blocks = re.split(r"\n\s*- alert: ", text)[1:]
    assert len(blocks) == len(alert_exprs(RULES))
    for block in blocks:
        name = block.split()[0]
        assert re.search(r"severity: (critical|warning|info)\b", block), name
        assert "summary:" in block and "description:" in block, name
