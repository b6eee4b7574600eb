# A nested deployment whose regions keep different datastores: region A on SQLite, region B on a
# real PostgreSQL server (the throwaway cluster scripts/with-postgres.sh starts for the tests).
"""Mixed datastores across tiers.

Needs TRELLIS_TEST_POSTGRES_DSN (exported by scripts/with-postgres.sh); without it the test
fails rather than skips, like every PostgreSQL test here. Each run creates its own database so
it never meets the datastore tests' tables.
"""

import os
import subprocess
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import workload_client as wl  # noqa: E402
from harness import DOWNSTREAM_START_TIMEOUT, Deployment, wait_for  # noqa: E402
from test_nested import AUDIENCE, Branch, LONG_TIMEOUT  # noqa: E402


def psql(dsn, sql):
    out = subprocess.run(["psql", dsn, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise AssertionError("psql %r failed: %s" % (sql, out.stderr))
    return out.stdout


def with_dbname(dsn, name):
    parts = [p for p in dsn.split() if not p.startswith("dbname=")]
    return " ".join(parts + ["dbname=" + name])


class FreshDatabaseTest(unittest.TestCase):
    """A test with its own database on the test PostgreSQL (self.db, reached through
    self.admin_dsn) and its own Deployment (self.d); both go away after the test."""

    DB_PREFIX = "trellis_it_"

    def setUp(self):
        base = os.environ.get("TRELLIS_TEST_POSTGRES_DSN")
        if not base:
            self.fail("TRELLIS_TEST_POSTGRES_DSN is not set: run under scripts/with-postgres.sh")
        self.admin_dsn = with_dbname(base, "postgres")
        self.db = self.DB_PREFIX + uuid.uuid4().hex[:12]
        psql(self.admin_dsn, "CREATE DATABASE %s" % self.db)
        self.addCleanup(psql, self.admin_dsn, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.db)
        self.d = Deployment()
        self.addCleanup(self.d.close)


class NestedPostgresTest(FreshDatabaseTest):
    DB_PREFIX = "trellis_nested_"

    def test_sqlite_and_postgres_regions_work_together(self):
        d = self.d
        root = d.server("root")
        host_a = d.attested_agent(root, "root-host-a")
        host_b = d.attested_agent(root, "root-host-b")
        region_a = d.downstream_server(root, host_a, "region-a", start=False)
        region_b = d.downstream_server(root, host_b, "region-b", start=False,
                                       postgres_dsn=with_dbname(self.admin_dsn, self.db))
        for s in (region_a, region_b):
            s.start(wait=False)
        for s in (region_a, region_b):
            s.wait_healthy(DOWNSTREAM_START_TIMEOUT)
        # Region B's state lives in PostgreSQL: its bundle row and CA journal are there.
        rows = psql(with_dbname(self.admin_dsn, self.db), "SELECT count(*) FROM bundles")
        self.assertIn("1", rows.split())

        branches = {}
        for name, server in (("region-a", region_a), ("region-b", region_b)):
            agent = d.attested_agent(server, name + "-wl")
            _, sid = agent.register_workload(name + "/workload")
            branches[name] = Branch(name, agent, sid)
        try:
            for b in branches.values():
                wait_for(b.svid, LONG_TIMEOUT, what="an X.509 SVID for %s" % b.spiffe_id)
            a, b = branches["region-a"], branches["region-b"]
            # X.509 both ways with openssl, each against the other region's bundle.
            for src, dst in ((a, b), (b, a)):
                chain, _ = src.svid()
                roots = dst.x509_roots()
                wl.openssl_verify(d.path(), chain, roots)
            # JWT both ways, each validated by the other region's agent.
            for src, dst in ((a, b), (b, a)):
                token = src.jwt()
                self.assertEqual(dst.validate(token), src.spiffe_id)

            # Region B restarts on PostgreSQL and resumes the CA it had.
            before = region_b.authorities("x509")["active"]["authority_id"]
            region_b.stop()
            region_b.start(timeout=DOWNSTREAM_START_TIMEOUT)
            self.assertEqual(region_b.authorities("x509")["active"]["authority_id"], before)
            _, sid = branches["region-b"].agent.register_workload("region-b/after-restart")
            late = Branch("region-b-late", branches["region-b"].agent, sid)
            try:
                chain, _ = wait_for(late.svid, LONG_TIMEOUT, what="an SVID after the restart")
                wl.openssl_verify(d.path(), chain, a.x509_roots())
            finally:
                late.close()
        except Exception:
            print(d.logs())
            raise
        finally:
            for br in branches.values():
                br.close()


if __name__ == "__main__":
    unittest.main()
