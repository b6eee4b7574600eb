# Health detail with real processes: each dependency is stopped and the health listener must
# say which subsystem failed and why, on /ready only, and recover when it returns.
"""/live and /ready.

A nested server whose tier above is stopped is not ready, names the upstream and the error,
and stays live; an agent whose server is stopped becomes not ready once its last sync is
stale, says how old it is, and stays live. Both are ready again once the dependency is back.
(A datastore outage is covered with PostgreSQL in test_ha_postgres.)
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import DOWNSTREAM_START_TIMEOUT, free_port, wait_for  # noqa: E402
from test_single_domain import DeploymentTest  # noqa: E402

LONG_TIMEOUT = 120


class HealthTest(DeploymentTest):

    def wait_report(self, who, path, status, check, what):
        """Waits until GET <path> answers `status` and check(subsystems) holds; returns the
        subsystems."""
        seen = {}

        def ok():
            code, body = who.health_report(path)
            seen["last"] = (code, body)
            if code != status or not body:
                return False
            return check(body["subsystems"])
        wait_for(ok, LONG_TIMEOUT, interval=0.5,
                 what="%s (last answer: %r)" % (what, seen.get("last")))
        return seen["last"][1]["subsystems"]

    def test_nested_server_reports_its_upstream_link(self):
        root = self.d.server("root")
        host = self.d.attested_agent(root, "root-host")
        region = self.d.downstream_server(root, host, "region", health_port=free_port(),
                                          timeout=DOWNSTREAM_START_TIMEOUT)
        subs = self.wait_report(region, "/ready", 200,
                                lambda s: s.get("upstream", {}).get("healthy"),
                                "the region ready with its upstream link open")
        self.assertIn("bundle stream open to 127.0.0.1:%d" % root.port, subs["upstream"]["detail"])
        self.assertIn("last bundle update", subs["upstream"]["detail"])
        self.assertTrue(subs["datastore"]["healthy"])
        self.assertTrue(subs["maintenance"]["healthy"])

        root.stop()
        subs = self.wait_report(region, "/ready", 500,
                                lambda s: not s["upstream"]["healthy"],
                                "the region not ready without its upstream")
        self.assertIn("no bundle stream to 127.0.0.1:%d" % root.port, subs["upstream"]["detail"])
        # Everything else is fine, and the region stays live: a restart would not help.
        for name, sub in subs.items():
            if name != "upstream":
                self.assertTrue(sub["healthy"], (name, sub))
        code, body = region.health_report("/live")
        self.assertEqual(code, 200, body)
        self.assertTrue(body["live"])

        root.start()
        self.wait_report(region, "/ready", 200, lambda s: s["upstream"]["healthy"],
                         "the region ready again once the root is back")

    def test_agent_reports_a_stale_sync_and_recovers(self):
        server = self.d.server()
        agent = self.d.agent(server, join_token=server.generate_token(), health_port=free_port())
        subs = self.wait_report(agent, "/ready", 200, lambda s: s["server_sync"]["healthy"],
                                "the agent ready")
        for name in ("sync_loop", "agent_svid", "workload_api", "workload_svids"):
            self.assertTrue(subs[name]["healthy"], (name, subs[name]))
        self.assertRegex(subs["server_sync"]["detail"], r"^last sync \d+s ago$")

        server.stop()
        subs = self.wait_report(agent, "/ready", 500, lambda s: not s["server_sync"]["healthy"],
                                "the agent not ready once its last sync is stale")
        self.assertRegex(subs["server_sync"]["detail"],
                         r"^last successful sync \d+s ago \(not ready after 30s\)$")
        # Its SVIDs are still valid and it keeps trying: live.
        self.assertTrue(subs["agent_svid"]["healthy"])
        self.assertTrue(subs["sync_loop"]["healthy"])
        code, body = agent.health_report("/live")
        self.assertEqual(code, 200, body)

        server.start()
        self.wait_report(agent, "/ready", 200, lambda s: s["server_sync"]["healthy"],
                         "the agent ready again once its server is back")


if __name__ == "__main__":
    unittest.main()
