"""The operator files in contrib/, checked with the tools that read them.

Prometheus rules and configuration with promtool, the Grafana dashboard's
queries with promtool and against the metrics osfmilter exports, the systemd
units with systemd-analyze, and the Sendmail snippet by building a
sendmail.cf from it with Sendmail's own m4 files.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from osfmilter.config import Config
from osfmilter.dovecot import sql_connect
from osfmilter.metrics import CALLBACK_BUCKETS, SCAN_BUCKETS, Metrics
from osfmilter.milter.adapter import OsfMilter
from osfmilter.model import ServerState, Stage
from osfmilter.replies import Reason
from osfmilter.scanners import clamav, rspamd, spamassassin
from osfmilter.spf.result import SEVERITY
from osfmilter.storage.store import HEALTH_NAME
from osfmilter.verdict import Action
from tests.harness.tls import make_certificate

pytestmark = pytest.mark.integration

CONTRIB = Path(__file__).parents[2] / "contrib"
ALERTS = CONTRIB / "prometheus" / "alerts.yml"
ALERTS_TEST = CONTRIB / "prometheus" / "alerts_test.yml"
SCRAPE = CONTRIB / "prometheus" / "scrape.yml"
DASHBOARD = CONTRIB / "grafana" / "osfmilter-dashboard.json"
SENDMAIL_MC = CONTRIB / "sendmail" / "osfmilter.mc"
SENDMAIL_CF_M4 = Path("/usr/share/sendmail/cf/m4/cf.m4")
UNITS = sorted((CONTRIB / "systemd").glob("*.service"))

SCANNERS = {clamav.NAME, spamassassin.NAME, rspamd.NAME}
# The values each label of osfmilter's metrics can take.
LABEL_VALUES: dict[str, set[str]] = {
    "action": {a.value for a in Action},
    "reason": {r.value for r in Reason},
    "state": {s.value for s in ServerState},
    "stage": {s.value for s in Stage},
    "scanner": SCANNERS,
    "backend": SCANNERS | {HEALTH_NAME},
    "result": set(SEVERITY),
}
# Labels Prometheus adds to every series (job, instance) and the histogram's le.
TARGET_LABELS = {"job", "instance", "le"}
# Not osfmilter's, but Prometheus's own series for every target.
PROMETHEUS_METRICS = {"up"}

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def exported_families() -> dict[str, tuple[set[str], set[str]]]:
    """Each metric family osfmilter serves: (its series names, its label names).

    Read from the registry ``osfmilter run`` serves, so a renamed metric shows up here.
    """
    metrics = Metrics()
    metrics.observe_backends(lambda: {HEALTH_NAME: True})
    metrics.observe_states(lambda: {})
    # Labelled metrics have no samples before their first use: ask for their label names.
    declared = {
        wrapper._name: set(wrapper._labelnames)
        for wrapper in vars(metrics).values()
        if isinstance(wrapper, MetricWrapperBase)
    }
    families = {}
    for family in metrics.registry.collect():
        labels = {label for sample in family.samples for label in sample.labels}
        labels |= declared.get(family.name, set())
        suffixes = _SUFFIXES.get(family.type, ("",))
        if family.type == "histogram":
            labels.add("le")
        families[family.name] = ({family.name + suffix for suffix in suffixes}, labels)
    return families


def exported_metrics() -> dict[str, set[str]]:
    """Every series name osfmilter serves, with its label names."""
    return {name: labels for names, labels in exported_families().values() for name in names}


# A small PromQL reader: enough to find the metric names, label matchers and
# grouping labels of an expression. Whether it parses at all is promtool's job.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_SELECTOR = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_IDENTIFIER = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "inf",
    "nan",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
}


def metric_names(expr: str) -> set[str]:
    text = _STRING.sub('""', expr)
    text = _GROUPING.sub(" ", _RANGE.sub("", _SELECTOR.sub("", text)))
    return {
        match[1]
        for match in _IDENTIFIER.finditer(text)
        if not match[2] and match[1].lower() not in _KEYWORDS
    }


def check_expression(expr: str, exported: dict[str, set[str]]) -> None:
    """Only exported series, real label names, and label values osfmilter can produce."""
    names = metric_names(expr)
    assert names, f"no metric in {expr!r}"
    unknown = names - exported.keys() - PROMETHEUS_METRICS
    assert not unknown, f"{expr!r} uses {sorted(unknown)}, which osfmilter does not export"
    labels = set().union(*(exported.get(name, set()) for name in names)) | TARGET_LABELS
    for grouping in _GROUPING.findall(expr):
        used = {label.strip() for label in grouping.split(",") if label.strip()}
        assert used <= labels, f"{expr!r} groups by {sorted(used - labels)}"
    for label, operator, value in _MATCHER.findall(expr):
        assert label in labels, f"{expr!r} matches on label {label!r}"
        if label not in LABEL_VALUES or "$" in value:
            continue
        values = value.split("|") if operator in {"=~", "!~"} else [value]
        wrong = set(values) - LABEL_VALUES[label]
        assert not wrong, f"{expr!r}: {label} is never {sorted(wrong)}"


def alert_rules() -> dict[str, str]:
    """alert name -> expression, read from alerts.yml (block scalars included)."""
    rules: dict[str, str] = {}
    lines = ALERTS.read_text().splitlines()
    name = ""
    index = 0
    while index < len(lines):
        line = lines[index]
        if match := re.match(r"\s*- alert:\s*(\S+)", line):
            name = match[1]
        elif match := re.match(r"(\s*)expr:\s*(.*)$", line):
            indent, expr = len(match[1]), match[2].strip()
            if expr in {"|", "|-", ">", ">-"}:
                block = []
                while index + 1 < len(lines) and (
                    not lines[index + 1].strip()
                    or len(lines[index + 1]) - len(lines[index + 1].lstrip()) > indent
                ):
                    index += 1
                    block.append(lines[index].strip())
                expr = "\n".join(block)
            assert name and name not in rules, f"expr without its own alert at line {index + 1}"
            rules[name] = expr
        index += 1
    return rules


# Prometheus -------------------------------------------------------------------


def test_alert_rules_pass_promtool() -> None:
    result = run("promtool", "check", "rules", str(ALERTS))
    assert result.returncode == 0, output(result)
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout, output(result)


def test_alert_rule_unit_tests_pass() -> None:
    result = run("promtool", "test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, output(result)
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test() -> None:
    tested = set(re.findall(r"alertname:\s*(\S+)", ALERTS_TEST.read_text()))
    alerts = set(alert_rules())
    assert {
        "OsfmilterDown",
        "OsfmilterScannerDown",
        "OsfmilterServerOnveilig",
        "OsfmilterDatabaseDown",
        "OsfmilterDatabaseErrors",
        "OsfmilterRefusalSpike",
        "OsfmilterFailOpen",
    } <= alerts
    assert alerts <= tested, f"alerts without a unit test: {sorted(alerts - tested)}"
    assert tested <= alerts, f"tests of alerts that do not exist: {sorted(tested - alerts)}"


def test_alert_rules_use_only_exported_metrics() -> None:
    exported = exported_metrics()
    for name, expr in alert_rules().items():
        try:
            check_expression(expr, exported)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc


def test_alert_thresholds_are_below_the_top_histogram_bucket() -> None:
    """histogram_quantile never returns more than the highest finite bucket."""
    top = {
        "osfmilter_callback_duration_seconds_bucket": CALLBACK_BUCKETS[-1],
        "osfmilter_scan_duration_seconds_bucket": SCAN_BUCKETS[-1],
    }
    found = 0
    for name, expr in alert_rules().items():
        for part in re.split(r"\n\s*or\s*\n", expr):
            if "histogram_quantile" not in part:
                continue
            bucket = re.search(r"(osfmilter_\w+_bucket)", part)
            threshold = re.search(r"\)\s*>=?\s*([\d.]+)\s*$", part)
            assert bucket and threshold, f"{name}: cannot read {part!r}"
            assert float(threshold[1]) < top[bucket[1]], f"{name} can never fire"
            found += 1
    assert found >= 2


def test_alerts_select_the_scrape_job() -> None:
    jobs = re.findall(r"job_name:\s*(\S+)", SCRAPE.read_text())
    assert jobs == ["osfmilter"]
    for name, expr in alert_rules().items():
        assert re.findall(r'job=~?"([^"]*)"', expr), f"{name} does not select the job"
        assert set(re.findall(r'job=~?"([^"]*)"', expr)) == {"osfmilter"}, name


def test_prometheus_config_with_the_scrape_job_and_rules(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n"
        f"rule_files:\n  - {ALERTS}\n" + SCRAPE.read_text()
    )
    result = run("promtool", "check", "config", str(config))
    assert result.returncode == 0, output(result)
    assert "SUCCESS: 1 rule files found" in result.stdout, output(result)
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout, output(result)


# Grafana ----------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def expressions(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
            assert match, f"variable {variable['name']}: {query!r}"
            yield f"variable {variable['name']}", match[1]


def test_dashboard_is_a_grafana_dashboard() -> None:
    board = dashboard()
    assert board["title"] and board["uid"] == "osfmilter"
    assert 36 <= board["schemaVersion"] <= 41
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    taken: set[tuple[int, int]] = set()
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"panel {panel['title']!r} overlaps another"
        taken |= cells
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == datasource, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == datasource, panel["title"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == datasource


def test_dashboard_queries_use_only_exported_metrics() -> None:
    exported = exported_metrics()
    for where, expr in expressions(dashboard()):
        try:
            check_expression(expr, exported)
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from exc


def test_dashboard_shows_every_metric() -> None:
    used = set().union(*(metric_names(expr) for _, expr in expressions(dashboard())))
    missing = {family for family, (names, _) in exported_families().items() if not names & used}
    assert not missing, f"no panel shows {sorted(missing)}"


def test_dashboard_has_the_operators_panels() -> None:
    exprs = [expr for _, expr in expressions(dashboard())]

    def some(*parts: str) -> bool:
        return any(all(part in expr for part in parts) for expr in exprs)

    assert some("by (action)", "rate(osfmilter_decisions_total")
    assert some("by (reason)", "rate(osfmilter_decisions_total")
    assert some("rate(osfmilter_accepted_messages_total")
    assert some("rate(osfmilter_accepted_bytes_total")
    for quantile in ("0.5", "0.99"):
        assert some(
            f"histogram_quantile({quantile}",
            "by (stage, le)",
            "osfmilter_callback_duration_seconds_bucket",
        )
        assert some(
            f"histogram_quantile({quantile}",
            "by (scanner, le)",
            "osfmilter_scan_duration_seconds_bucket",
        )
    assert some("osfmilter_backend_up", "by (backend)")
    assert some("osfmilter_servers", "by (state)")
    assert some("osfmilter_connections_active")
    assert some("osfmilter_spf_results_total", "by (result)")
    assert some("osfmilter_fail_open_total")


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule (Grafana's variables filled in)."""
    rules = []
    for number, (where, expr) in enumerate(expressions(dashboard())):
        concrete = (
            expr.replace("$__rate_interval", "5m")
            .replace("$__interval", "1m")
            .replace("$__range", "1h")
        )
        concrete = re.sub(r"\$\{?\w+\}?", ".*", concrete)
        rules.append(
            {"record": f"dashboard:query_{number}", "expr": concrete, "labels": {"where": where}}
        )
    path = tmp_path / "dashboard-rules.json"  # JSON is YAML
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run("promtool", "check", "rules", str(path))
    assert result.returncode == 0, output(result)
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_promql_reader() -> None:
    """The reader above, on the shapes the contrib files use."""
    assert metric_names(
        'sum by (job, instance) (rate(osfmilter_decisions_total{reason!="x", a=~"$b"}[5m]))'
        " / on (instance) group_left up offset 10m > 0.5 and vector(1)"
    ) == {"osfmilter_decisions_total", "up"}
    assert metric_names("histogram_quantile(0.99, sum by (le) (rate(a_bucket[1m]))) > 1e3") == {
        "a_bucket"
    }
    with pytest.raises(AssertionError, match="never"):
        check_expression('osfmilter_decisions_total{reason="nonsense"}', exported_metrics())
    with pytest.raises(AssertionError, match="does not export"):
        check_expression("osfmilter_decision_total", exported_metrics())
    with pytest.raises(AssertionError, match="groups by"):
        check_expression("sum by (reasons) (osfmilter_decisions_total)", exported_metrics())


# systemd ----------------------------------------------------------------------


@pytest.mark.parametrize("unit", UNITS, ids=[unit.name for unit in UNITS])
def test_systemd_unit_verifies(unit: Path, tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing, once the binary it runs exists.

    The units run /usr/local/bin/osfmilter, which a test machine does not
    have (verify only reports that); the copy runs this Python instead. The
    osfmilter user need not exist: verify does not look users up.
    """
    text = unit.read_text()
    assert "ExecStart=/usr/local/bin/osfmilter run" in text
    assert re.search(r"^User=osfmilter$", text, re.MULTILINE)
    copy = tmp_path / unit.name
    copy.write_text(text.replace("/usr/local/bin/osfmilter", sys.executable))
    checked = [copy]
    if unit.name.endswith("@.service"):
        instance = tmp_path / unit.name.replace("@.", "@outbound.")
        instance.symlink_to(copy)
        checked.append(instance)
    for path in checked:
        result = run("systemd-analyze", "verify", "--man=no", str(path))
        assert result.returncode == 0, output(result)
        assert not (result.stdout + result.stderr).strip(), output(result)
        # The hardening stays where it is: exposure at most 2.0 of 10.
        result = run(
            "systemd-analyze",
            "security",
            "--offline=true",
            "--threshold=20",
            "--no-pager",
            str(path),
        )
        assert result.returncode == 0, output(result)


def test_systemd_template_runs_one_config_per_instance() -> None:
    text = (CONTRIB / "systemd" / "osfmilter@.service").read_text()
    assert "Environment=OSFMILTER_CONFIG=/etc/osfmilter/%i.toml" in text
    # Instances share the database directory, not the runtime directory
    # (systemd removes that when its instance stops).
    assert re.search(r"^StateDirectory=osfmilter$", text, re.MULTILINE)
    assert re.search(r"^RuntimeDirectory=osfmilter/%i$", text, re.MULTILINE)


# Sendmail ---------------------------------------------------------------------


def _seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)([smh]?)", value)
    assert match, value
    return int(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


def _macros(text: str, option: str) -> set[str]:
    match = re.search(rf"^define\(`{option}', `+([^']*)'+\)dnl$", text, re.MULTILINE)
    assert match, f"{option} is not defined"
    # {i} and i name the same macro.
    return {re.sub(r"^\{(.)\}$", r"\1", name.strip()) for name in match[1].split(",")}


def test_sendmail_mc_attaches_the_milter_safely() -> None:
    text = SENDMAIL_MC.read_text()
    filters = re.findall(r"^INPUT_MAIL_FILTER\(`osfmilter', `([^']*)'\)dnl$", text, re.MULTILINE)
    assert len(filters) == 1, "one INPUT_MAIL_FILTER line for osfmilter"
    equates = {
        key.strip(): value
        for key, _, value in (part.partition("=") for part in filters[0].split(","))
    }
    config = Config()
    assert equates["S"] == config.milter.socket
    # Tempfail when the milter is unreachable: never an open relay, never a bounce.
    assert equates["F"] == "T"
    timeouts = {part[0]: _seconds(part[2:]) for part in equates["T"].split(";")}
    assert set(timeouts) == {"C", "S", "R", "E"}
    assert timeouts["C"] <= 30
    # Sendmail waits R for each reply, also while the end of the message is
    # scanned: it must outlast the slower scanner plus recording the decision.
    slowest_scan = max(config.clamav.timeout, config.spam.timeout)
    assert timeouts["R"] > slowest_scan + config.database.timeout
    assert timeouts["E"] >= timeouts["R"]
    assert "FEATURE(`promiscuous_relay')dnl" in text


def test_sendmail_mc_sends_the_macros_osfmilter_reads() -> None:
    text = SENDMAIL_MC.read_text()
    stages = {
        "confMILTER_MACROS_ENVFROM": OsfMilter.envfrom,
        "confMILTER_MACROS_ENVRCPT": OsfMilter.envrcpt,
        "confMILTER_MACROS_EOM": OsfMilter.eom,
    }
    for option, callback in stages.items():
        wanted = {re.sub(r"^\{(.)\}$", r"\1", name) for name in getattr(callback, "_symlist", ())}
        assert wanted, f"{callback.__name__} asks for no macros"
        assert wanted <= _macros(text, option), option
    assert {"i", "{auth_authen}"} <= _macros(text, "confMILTER_MACROS_ENVFROM")


def test_sendmail_message_size_is_above_every_plan() -> None:
    text = SENDMAIL_MC.read_text()
    match = re.search(r"^define\(`confMAX_MESSAGE_SIZE', `(\d+)'\)dnl$", text, re.MULTILINE)
    assert match
    plans = Config().plans
    assert int(match[1]) > max(plans.free.max_message_size, plans.paid.max_message_size)
    assert int(match[1]) > 52428800


@pytest.fixture(scope="module")
def sendmail_cf_build(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """m4 on a minimal sendmail.mc that includes the snippet, as the README's step 1 says."""
    assert SENDMAIL_CF_M4.exists(), "install the Debian packages m4 and sendmail-cf"
    directory = tmp_path_factory.mktemp("sendmail-cf")
    mc = directory / "sendmail.mc"
    mc.write_text(
        f"include(`{SENDMAIL_CF_M4}')dnl\n"
        "VERSIONID(`osfmilter contrib test')dnl\n"
        "OSTYPE(`linux')dnl\n"
        "DOMAIN(`generic')dnl\n"
        f"include(`{SENDMAIL_MC}')dnl\n"
        "MAILER(`local')dnl\n"
        "MAILER(`smtp')dnl\n"
    )
    return run("m4", str(mc), cwd=directory)


def test_sendmail_cf_builds_from_the_mc(
    sendmail_cf_build: subprocess.CompletedProcess[str],
) -> None:
    """m4 with Sendmail's cf files (Debian: m4, sendmail-cf) turns it into sendmail.cf."""
    result = sendmail_cf_build
    assert result.returncode == 0, output(result)
    # The only thing m4 says is the expected warning about promiscuous_relay.
    assert result.stderr.count("WARNING") == 1 and "promiscuous_relay" in result.stderr
    cf = result.stdout.splitlines()
    assert "Xosfmilter, S=inet:8894@127.0.0.1, F=T, T=C:10s;S:30s;R:2m;E:5m" in cf
    assert "O InputMailFilters=osfmilter" in cf
    assert "O MaxMessageSize=62914560" in cf
    assert (
        "O Milter.macros.envfrom=i, {auth_type}, {auth_authen}, {auth_ssf}, {auth_author}, "
        "{mail_mailer}, {mail_host}, {mail_addr}"
    ) in cf
    assert "O Milter.macros.envrcpt=i, {rcpt_mailer}, {rcpt_host}, {rcpt_addr}" in cf
    assert "O Milter.macros.eom=i, {msg_id}" in cf
    # The snippet's comments are dnl'd away and leave no stray text behind.
    assert not [
        line for line in cf if "osfmilter" in line and not line.startswith(("X", "O ", "#"))
    ]


def test_sendmail_readme_shows_what_its_grep_prints(
    sendmail_cf_build: subprocess.CompletedProcess[str],
) -> None:
    """Step 3 of contrib/sendmail/README: its grep, and the lines it says that prints."""
    readme = (CONTRIB / "sendmail" / "README").read_text()
    match = re.search(
        r"^ +grep -E '([^']+)' /etc/mail/sendmail.cf\n.*?should show.*?\n\n"
        r"((?: {7}\S[^\n]*\n)+)",
        readme,
        re.MULTILINE | re.DOTALL,
    )
    assert match, "step 3 of contrib/sendmail/README has moved"
    printed = [line for line in sendmail_cf_build.stdout.splitlines() if re.match(match[1], line)]
    shown = [line.strip() for line in match[2].splitlines()]
    assert len(shown) == len(printed), f"README shows {shown}, grep prints {printed}"
    for text, line in zip(shown, printed, strict=True):
        # A long line may end in ", ..." in the README.
        if text.endswith(", ..."):
            assert line.startswith(text.removesuffix("...")), (text, line)
        else:
            assert text == line


# osfmilter's own files ----------------------------------------------------------

OSFMILTER_TOML = CONTRIB / "osfmilter.toml"
POSTFIX_DIR = CONTRIB / "postfix"
CLAMD_CONF = CONTRIB / "clamav" / "clamd-osfmilter.conf"


@pytest.fixture
def postfix_dir(tmp_path: Path) -> Path:
    """contrib/postfix as installed: the operator's certificate where main.cf names one."""
    certificate = make_certificate(tmp_path / "tls")
    installed = tmp_path / "postfix"
    shutil.copytree(POSTFIX_DIR, installed)
    main_cf = (installed / "main.cf").read_text()
    for key, path in certificate.postfix_main_cf().items():
        [line] = re.findall(rf"(?m)^{key} = .*$", main_cf)
        main_cf = main_cf.replace(line, f"{key} = {path}")
    (installed / "main.cf").write_text(main_cf)
    return installed


def check_config(
    config: Path, postfix_dir: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    return run(
        sys.executable,
        "-m",
        "osfmilter",
        "--config",
        str(config),
        "check-config",
        "--postfix-config",
        str(postfix_dir),
        *options,
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("error:")]


def test_shipped_config_is_refused_until_clamd_is_set(postfix_dir: Path) -> None:
    """Its [clamav] address is empty: scanning off is fail-open, the one thing left to decide."""
    result = check_config(OSFMILTER_TOML, postfix_dir)
    assert result.returncode == 2, output(result)
    errors = error_lines(result)
    assert len(errors) == 1 and errors[0].startswith("error: [clamav] address: empty"), output(
        result
    )


def test_shipped_files_pass_check_config_together(tmp_path: Path, postfix_dir: Path) -> None:
    """contrib's osfmilter.toml with clamd set, its Postfix snippets and its clamd limits."""
    text = OSFMILTER_TOML.read_text()
    clamav = text.index("[clamav]")
    empty = text.index('address = ""', clamav)
    config = tmp_path / "osfmilter.toml"
    config.write_text(
        text[:empty] + 'address = "/run/clamav/clamd.ctl"' + text[empty + len('address = ""') :]
    )
    result = check_config(config, postfix_dir, "--clamd-config", str(CLAMD_CONF))
    assert result.returncode == 0 and not error_lines(result), output(result)


def test_shipped_postfix_listeners_refuse_an_inbound_instance(
    tmp_path: Path, postfix_dir: Path
) -> None:
    """contrib/postfix's listeners are the customers': the milter gates them."""
    config = tmp_path / "inbound.toml"
    config.write_text('mode = "inbound"\n[milter]\nsocket = "inet:8894@127.0.0.1"\n')
    result = check_config(config, postfix_dir)
    assert result.returncode == 2, output(result)
    assert [line.split(":")[1] for line in error_lines(result)] == [
        " postfix listener smtp/inet",
        " postfix listener 2525/inet",
    ], output(result)


DOVECOT = CONTRIB / "dovecot"


def dovecot_sql_settings(name: str) -> dict[str, str]:
    settings = {}
    for line in (DOVECOT / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def test_dovecot_config_is_what_debians_dovecot_reads() -> None:
    """doveconf parses it; auth only, through the socket Postfix's smtpd_sasl_path names."""
    result = run("doveconf", "-n", "-c", str(DOVECOT / "dovecot.conf"))
    assert result.returncode == 0 and not result.stderr, output(result)
    settings = result.stdout
    assert "protocols" not in settings  # empty, Dovecot's default: no IMAP, POP3, LMTP
    assert "auth_mechanisms = plain login\n" in settings
    assert "userdb" not in settings
    assert "unix_listener /var/spool/postfix/private/auth {" in settings
    main_cf = (CONTRIB / "postfix" / "main.cf").read_text()
    assert "\nsmtpd_sasl_path = private/auth\n" in main_cf
    assert "\nsmtpd_sasl_type = dovecot\n" in main_cf


def test_dovecot_sql_files_differ_only_in_where_the_database_is() -> None:
    sqlite = dovecot_sql_settings("osfmilter-sql-sqlite.conf.ext")
    pgsql = dovecot_sql_settings("osfmilter-sql-pgsql.conf.ext")
    assert (
        set(sqlite) == set(pgsql) == {"driver", "connect", "default_pass_scheme", "password_query"}
    )
    assert sqlite["password_query"] == pgsql["password_query"]
    assert "password_hash IS NOT NULL" in sqlite["password_query"]
    # The milter's default database (state_dir /var/lib/osfmilter, as systemd runs it).
    default = sql_connect(Config(state_dir="/var/lib/osfmilter").database_url)
    assert (sqlite["driver"], sqlite["connect"]) == (default.driver, default.connect)
    assert pgsql["driver"] == "pgsql"


def test_readmes_postfix_step_applies_contrib_postfix_to_a_debian_config(tmp_path: Path) -> None:
    """The deployment guide's step 5, run as written (with -c DIR) on Debian's shipped files."""
    readme = (CONTRIB.parent / "README.rst").read_text()
    match = re.search(r"cp -a /etc/postfix /etc/postfix\.before-osfmilter\n(.*?)\n\n", readme, re.S)
    assert match, "step 5 of README.rst's 'Deploying on a relay' has moved"
    etc = tmp_path / "postfix"
    etc.mkdir()
    shutil.copy("/usr/share/postfix/main.cf.debian", etc / "main.cf")
    shutil.copy("/usr/share/postfix/master.cf.dist", etc / "master.cf")
    script = match[1].replace("postconf ", f"postconf -c {etc} ")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=CONTRIB.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    settings = [
        line.split("=", 1)
        for line in (CONTRIB / "postfix" / "main.cf").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]

    def postconf(*args: str) -> str:
        result = run("postconf", "-c", str(etc), *args)
        assert result.returncode == 0, output(result)
        return result.stdout

    applied = postconf("-n")
    for name, value in settings:
        assert f"{name.strip()} = {value.strip()}".rstrip() in applied.splitlines(), name
    services = postconf("-P")
    for setting in (
        "smtp/inet/smtpd_sasl_auth_enable = yes",
        "2525/inet/smtpd_sasl_auth_enable = yes",
        "2525/inet/syslog_name = postfix/2525",
    ):
        assert setting in services.splitlines()
    listeners = postconf("-M", "2525/inet")
    assert listeners.split()[:8] == ["2525", "inet", "n", "-", "y", "-", "-", "smtpd"]
