# Prometheus metrics end to end: a nested root + region + agents with telemetry, every metric
# docs/metrics.md lists exported by the processes it names, and the Grafana dashboard checked.
"""Metrics tests.

MetricsTest runs a root server, an agent of the root hosting a region server, and an agent of
the region serving a workload, each with `telemetry { Prometheus {} }`, scrapes every /metrics
and checks that each metric of docs/metrics.md for that kind of process is exported, with sane
values. DashboardTest checks examples/grafana/trellis-dashboard.json is a Grafana dashboard model
whose queries use only documented metrics (no processes: labelled unit).
"""

import json
import os
import re
import sys
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
import workload_client as wl  # noqa: E402
from harness import DOWNSTREAM_START_TIMEOUT, free_port, wait_for  # noqa: E402
from test_single_domain import DeploymentTest  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
METRICS_DOC = os.path.join(REPO, "docs", "metrics.md")
DASHBOARD = os.path.join(REPO, "examples", "grafana", "trellis-dashboard.json")
LONG_TIMEOUT = 120
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


# ---- docs/metrics.md ---------------------------------------------------------------------------

def documented_metrics():
    """{"server": {name: row}, "agent": {name: row}} from the doc's two tables, where row is
    {"type", "labels", "meaning"}."""
    sections = {"server": {}, "agent": {}}
    current = None
    with open(METRICS_DOC) as f:
        for line in f:
            heading = re.match(r"^## (Server|Agent) metrics\s*$", line)
            if heading:
                current = heading.group(1).lower()
                continue
            if line.startswith("## "):
                current = None
                continue
            if current is None:
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) < 4:
                continue
            name = re.fullmatch(r"`([a-z_][a-z0-9_]*)`", cells[0])
            if not name:
                continue
            sections[current][name.group(1)] = {
                "type": cells[1], "labels": cells[2], "meaning": " | ".join(cells[3:])}
    return sections


def nested_only(row):
    return "nested servers only" in row["meaning"].lower()


# ---- the text format ---------------------------------------------------------------------------

def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as resp:
        return resp.read().decode()


SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """({family name: type}, [(sample name, {labels}, value)])."""
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            types[name] = kind.strip()
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if m:
            labels = dict(LABEL_RE.findall(m.group(2) or ""))
            samples.append((m.group(1), labels, float(m.group(3))))
    return types, samples


def values(samples, name, **labels):
    return [v for n, l, v in samples
            if n == name and all(l.get(k) == want for k, want in labels.items())]


def value(samples, name, **labels):
    found = values(samples, name, **labels)
    if len(found) != 1:
        raise AssertionError("expected one sample %s%r, found %r" % (name, labels, found))
    return found[0]


def telemetry_config(port):
    return "\ntelemetry {\n  Prometheus {\n    host = \"127.0.0.1\"\n    port = %d\n  }\n}\n" % port


class MetricsTest(DeploymentTest):

    def wait_exported(self, port, expected, what):
        """Scrapes until every family in `expected` ({name: documented type}) is exported with
        that type; returns the parsed (types, samples) of the last scrape."""
        seen = {}

        def complete():
            types, samples = parse(scrape(port))
            seen["parsed"] = (types, samples)
            seen["missing"] = sorted(n for n in expected if types.get(n) != expected[n])
            return not seen["missing"]
        try:
            wait_for(complete, LONG_TIMEOUT, interval=0.5, what="%s to export every documented "
                     "metric" % what)
        except AssertionError:
            types = seen.get("parsed", ({}, []))[0]
            self.fail("%s does not export (with the documented type): %s" % (
                what, ", ".join("%s (%s)" % (n, types.get(n, "absent")) for n in seen["missing"])))
        return seen["parsed"]

    def test_every_documented_metric_is_exported_by_a_nested_deployment(self):
        doc = documented_metrics()
        self.assertGreaterEqual(len(doc["server"]), 10, "server table not found in metrics.md")
        self.assertGreaterEqual(len(doc["agent"]), 8, "agent table not found in metrics.md")

        ports = {name: free_port() for name in ("root", "root-host", "region", "region-wl")}
        root = self.d.server("root", extra_config=telemetry_config(ports["root"]))
        host = self.d.attested_agent(root, "root-host",
                                     extra_config=telemetry_config(ports["root-host"]))
        region = self.d.downstream_server(root, host, "region",
                                          extra_config=telemetry_config(ports["region"]),
                                          timeout=DOWNSTREAM_START_TIMEOUT)
        agent = self.d.attested_agent(region, "region-wl",
                                      extra_config=telemetry_config(ports["region-wl"]))
        agent.register_workload("metrics/app")
        with wl.WorkloadClient(agent.socket_path) as client:
            # One stream (opened, then cancelled) and one unary call on the Workload API.
            svid = wait_for(lambda: client.fetch_x509(timeout=10).svids, LONG_TIMEOUT,
                            what="the workload's X509-SVID")
            self.assertTrue(svid)
            self.assertTrue(client.fetch_jwt(["metrics-test"]).svids)
        # The host's Workload API sees a unary call and a finished stream too (their answers do
        # not matter here: every call is counted with its status).
        with wl.WorkloadClient(host.socket_path) as client:
            for call in (lambda: client.fetch_jwt(["metrics-test"]), client.fetch_x509_bundles):
                try:
                    call()
                except grpc.RpcError:
                    pass

        def kind(rows, nested):
            return {n: r["type"] for n, r in rows.items() if nested or not nested_only(r)}

        # Root: every server metric but the upstream link's.
        _, s = self.wait_exported(ports["root"], kind(doc["server"], nested=False), "the root")
        self.assertEqual(values(s, "trellis_server_upstream_connected"), [])
        self.check_server(s, "the root")

        # Region: all of them, and its link to the root is up.
        _, s = self.wait_exported(ports["region"], kind(doc["server"], nested=True), "the region")
        self.check_server(s, "the region")
        self.assertEqual(value(s, "trellis_server_upstream_connected"), 1)
        self.assertGreaterEqual(value(s, "trellis_server_upstream_bundle_age_seconds"), 0)

        # Both agents: every agent metric, and what they hold.
        for name in ("root-host", "region-wl"):
            _, s = self.wait_exported(ports[name], kind(doc["agent"], nested=True), name)
            self.check_agent(s, name)
        _, s = parse(scrape(ports["region-wl"]))
        self.assertGreaterEqual(value(s, "trellis_agent_cached_jwt_svids"), 1)
        self.assertEqual(value(s, "trellis_agent_rpc_requests_total", method="FetchJWTSVID",
                               code="OK"), 1)
        self.assertEqual(value(s, "trellis_agent_rpc_open_streams", method="FetchX509SVID"), 0)
        # A server's families never appear on an agent and the other way round.
        types, _ = parse(scrape(ports["region-wl"]))
        self.assertFalse([n for n in types if n.startswith("trellis_server_")])
        types, _ = parse(scrape(ports["region"]))
        self.assertFalse([n for n in types if n.startswith("trellis_agent_")])

    def check_server(self, s, who):
        msg = who
        self.assertEqual(value(s, "trellis_server_ready"), 1, msg)
        for kind in ("x509", "jwt"):
            self.assertGreater(value(s, "trellis_server_authority_remaining_lifetime_seconds",
                                     kind=kind, state="active"), 0, msg)
            self.assertGreaterEqual(value(s, "trellis_server_authority_rotations_total",
                                          kind=kind), 1, msg)
        # Agent SVIDs at least (the root also signed the region server's SVID).
        self.assertGreaterEqual(value(s, "trellis_server_x509_svids_signed_total"), 1, msg)
        self.assertGreaterEqual(value(s, "trellis_server_agents_connected"), 1, msg)
        self.assertGreaterEqual(value(s, "trellis_server_entries"), 1, msg)
        self.assertGreaterEqual(value(s, "trellis_server_rpc_open_streams",
                                      method="WatchChanges"), 1, msg)
        self.assertGreaterEqual(value(s, "trellis_server_rpc_requests_total",
                                      method="AttestAgent", code="OK"), 1, msg)
        # Every operation has its series; the store was used and never failed.
        calls = sum(values(s, "trellis_server_datastore_call_duration_seconds_count"))
        self.assertGreater(calls, 0, msg)
        self.assertEqual(sum(values(s, "trellis_server_datastore_errors_total")), 0, msg)
        self.assertGreaterEqual(len(values(s, "trellis_server_datastore_errors_total")), 40, msg)
        self.assertGreater(value(s, "trellis_server_datastore_transactions_total"), 0, msg)
        for limiter in ("attestation", "signing"):
            self.assertEqual(value(s, "trellis_server_rate_limited_total", limiter=limiter), 0,
                             msg)

    def check_agent(self, s, who):
        msg = who
        self.assertEqual(value(s, "trellis_agent_ready"), 1, msg)
        self.assertGreaterEqual(value(s, "trellis_agent_sync_total", result="ok"), 1, msg)
        self.assertGreaterEqual(value(s, "trellis_agent_sync_duration_seconds_count"), 1, msg)
        self.assertGreaterEqual(value(s, "trellis_agent_cached_entries"), 1, msg)
        self.assertGreaterEqual(value(s, "trellis_agent_cached_svids"), 1, msg)
        self.assertGreaterEqual(value(s, "trellis_agent_svids_minted_total"), 1, msg)
        self.assertGreater(value(s, "trellis_agent_svid_remaining_lifetime_seconds"), 0, msg)
        self.assertGreaterEqual(value(s, "trellis_agent_last_sync_age_seconds"), 0, msg)


# ---- examples/grafana/trellis-dashboard.json ---------------------------------------------------

METRIC_RE = re.compile(r"\btrellis_[a-z0-9_]+")


class DashboardTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        with open(DASHBOARD) as f:
            cls.dash = json.load(f)
        doc = documented_metrics()
        cls.documented = dict(doc["server"])
        cls.documented.update(doc["agent"])

    def panels(self):
        """Every panel, those inside collapsed rows included."""
        out = []
        for p in self.dash["panels"]:
            out.append(p)
            out.extend(p.get("panels", []))
        return out

    def test_is_a_grafana_dashboard_model(self):
        self.assertTrue(self.dash.get("title"))
        self.assertGreaterEqual(self.dash.get("schemaVersion", 0), 36)
        variables = {v["name"]: v for v in self.dash["templating"]["list"]}
        self.assertEqual(variables["datasource"]["type"], "datasource")
        self.assertEqual(variables["datasource"]["query"], "prometheus")
        for name in ("job", "instance"):
            self.assertEqual(variables[name]["type"], "query", name)
            self.assertEqual(variables[name]["datasource"]["uid"], "${datasource}", name)
        panels = self.panels()
        ids = [p["id"] for p in panels]
        self.assertEqual(len(ids), len(set(ids)), "panel ids repeat")
        self.assertGreaterEqual(len([p for p in panels if p["type"] != "row"]), 10)
        for p in panels:
            what = "panel %r" % p.get("title")
            grid = p["gridPos"]
            for key in ("x", "y", "w", "h"):
                self.assertIsInstance(grid[key], int, what)
            self.assertLessEqual(grid["x"] + grid["w"], 24, what)
            if p["type"] == "row":
                continue
            self.assertTrue(p.get("title"), what)
            self.assertEqual(p["datasource"]["uid"], "${datasource}", what)
            self.assertTrue(p["targets"], what)
            for t in p["targets"]:
                self.assertTrue(t.get("expr"), what)
                self.assertTrue(t.get("refId"), what)
                self.assertEqual(t["datasource"]["uid"], "${datasource}", what)
                self.assertIn("$job", t["expr"], what)

    def test_panels_do_not_overlap(self):
        cells = {}
        for p in self.panels():
            g = p["gridPos"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    self.assertNotIn((x, y), cells, "%r overlaps %r" % (p["title"], cells.get((x, y))))
                    cells[(x, y)] = p["title"]

    def test_every_metric_queried_is_documented(self):
        exprs = [t["expr"] for p in self.panels() for t in p.get("targets", [])]
        exprs += [v["query"]["query"] for v in self.dash["templating"]["list"]
                  if isinstance(v.get("query"), dict)]
        used = set()
        for expr in exprs:
            used.update(METRIC_RE.findall(expr))
        self.assertTrue(used)
        for name in sorted(used):
            if name in self.documented:
                continue
            base = next((name[:-len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
            self.assertIn(base, self.documented, "%s is not in docs/metrics.md" % name)
            self.assertEqual(self.documented[base]["type"], "histogram", name)

    def test_the_dashboard_covers_each_tier_health_signal(self):
        used = " ".join(t["expr"] for p in self.panels() for t in p.get("targets", []))
        for name in ("trellis_server_ready", "trellis_server_upstream_connected",
                     "trellis_server_authority_remaining_lifetime_seconds",
                     "trellis_server_x509_svids_signed_total", "trellis_server_rpc_requests_total",
                     "trellis_server_rpc_duration_seconds_bucket",
                     "trellis_server_datastore_call_duration_seconds_bucket",
                     "trellis_server_datastore_errors_total", "trellis_server_agents_connected",
                     "trellis_agent_sync_duration_seconds_bucket", "trellis_agent_sync_total",
                     "trellis_server_rate_limited_total"):
            self.assertIn(name, used)


if __name__ == "__main__":
    unittest.main()
