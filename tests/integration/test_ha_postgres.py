# Two replicas of one tier sharing one real PostgreSQL (the throwaway cluster
# scripts/with-postgres.sh starts for the tests).
"""Replicas on a shared PostgreSQL.

An entry written through one replica is served through the other, and both replicas' CAs sit in
the one bundle, so an SVID from either verifies with openssl. Needs TRELLIS_TEST_POSTGRES_DSN
(exported by scripts/with-postgres.sh); each run creates its own database.
"""

import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
import workload_client as wl  # noqa: E402
from harness import agent_field, free_port, wait_for  # noqa: E402
from test_nested import LONG_TIMEOUT, Branch  # noqa: E402
from test_nested_postgres import FreshDatabaseTest, with_dbname  # noqa: E402
from test_single_domain import (AGENT_REFUSED_RE, ATTEST_FAILED_RE,  # noqa: E402
                                SERVER_REFUSED_RE, self_signed_ca)


class ReplicasTest(FreshDatabaseTest):
    """Replicas of one tier, each a real server on this test's database."""

    def dsn(self):
        return with_dbname(self.admin_dsn, self.db)

    def replicas(self, *names, **kwargs):
        return [self.d.server(name, postgres_dsn=self.dsn(), **kwargs) for name in names]

    def wait_for_new_workload(self, replica, agent, path, when):
        """Registers a workload through `replica` and waits until `agent` serves its SVID."""
        _, sid = replica.register_workload(agent, path)
        branch = Branch(path.split("/")[-1], agent, sid)
        try:
            wait_for(branch.svid, LONG_TIMEOUT, what="an SVID for an entry written " + when)
        finally:
            branch.close()


class HaPostgresTest(ReplicasTest):
    DB_PREFIX = "trellis_ha_"

    def test_entry_written_through_one_replica_is_served_through_the_other(self):
        d = self.d
        replica_a, replica_b = self.replicas("replica-a", "replica-b")
        # Each replica keeps its own CA; the shared bundle holds both.
        a_ca = replica_a.authorities("x509")["active"]["authority_id"]
        b_ca = replica_b.authorities("x509")["active"]["authority_id"]
        self.assertNotEqual(a_ca, b_ca)

        on_b = d.attested_agent(replica_b, "agent-on-b")
        on_a = d.attested_agent(replica_a, "agent-on-a")
        branches = []
        try:
            # Written through A for the agent attested to B, and the other way round.
            for writer, agent, path in ((replica_a, on_b, "ha/via-a"),
                                        (replica_b, on_a, "ha/via-b")):
                start = time.monotonic()
                _, sid = writer.register_workload(agent, path)
                branch = Branch(path, agent, sid)
                branches.append(branch)
                chain, roots = wait_for(branch.svid, LONG_TIMEOUT,
                                        what="an X.509 SVID for %s through %s" % (sid, agent.name))
                print("%s written through %s, served by %s's agent after %.2f s" %
                      (sid, writer.name, agent.server.name, time.monotonic() - start))
                wl.openssl_verify(d.path(), chain, roots)
            # Each SVID also verifies against the bundle the other replica's agent holds.
            for branch, other in ((branches[0], branches[1]), (branches[1], branches[0])):
                chain, _ = branch.svid()
                wl.openssl_verify(d.path(), chain, other.x509_roots())
        except Exception:
            print(d.logs())
            raise
        finally:
            for b in branches:
                b.close()

    def test_one_join_token_raced_against_two_replicas_attests_exactly_one_agent(self):
        d = self.d
        replica_a, replica_b = self.replicas("replica-a", "replica-b")
        token = replica_a.generate_token()
        racers = [d.agent(replica_a, name="racer-a", join_token=token, wait=False),
                  d.agent(replica_b, name="racer-b", join_token=token, wait=False)]

        def refused(agent):
            if not agent.process.running():
                return agent.process.returncode() != 0
            return ATTEST_FAILED_RE.search(agent.log()) is not None

        def settled():
            healthy = [a for a in racers if a.process.running() and a.cli("healthcheck").ok]
            losers = [a for a in racers if a not in healthy and refused(a)]
            return (healthy, losers) if len(healthy) + len(losers) == 2 else None

        try:
            healthy, losers = wait_for(settled, LONG_TIMEOUT, what="both racers to settle")
            self.assertEqual(len(healthy), 1, "exactly one racer attests")
            self.assertEqual(len(losers), 1, "the other is refused")
            # Both replicas see the one agent the token made.
            for replica in (replica_a, replica_b):
                self.assertEqual(len(replica.agents()), 1, replica.name)
        except Exception:
            print(d.logs())
            raise

    def test_a_ban_through_one_replica_is_enforced_by_the_other(self):
        d = self.d
        replica_a, replica_b = self.replicas("replica-a", "replica-b")
        agent = d.attested_agent(replica_b, "agent-on-b")
        _, sid = replica_b.register_workload(agent, "ha/before-ban")
        branch = Branch("before-ban", agent, sid)
        try:
            wait_for(branch.svid, LONG_TIMEOUT, what="an X.509 SVID before the ban")
            agent_offset = agent.process.log_size()
            b_offset = replica_b.process.log_size()
            replica_a.cli("agent", "ban", "-spiffeID", agent.spiffe_id, check=True)
            self.assertTrue(agent_field(replica_b.agent(agent.spiffe_id), "banned"))
            # Written after the ban through the banning replica: the change notice makes the
            # agent sync with replica B, which must refuse it.
            _, late = replica_a.register_workload(agent, "ha/after-ban")

            def refused():
                return (AGENT_REFUSED_RE.search(agent.process.log_since(agent_offset)) or
                        SERVER_REFUSED_RE.search(replica_b.process.log_since(b_offset)))
            wait_for(refused, LONG_TIMEOUT, what="replica B refusing the banned agent")
            # The ban was written before the entry, so no sync can have delivered the entry.
            if agent.process.running():
                try:
                    resp = branch.client.fetch_x509(timeout=10)
                    self.assertNotIn(late, [s.spiffe_id for s in resp.svids])
                except grpc.RpcError as e:
                    self.assertNotEqual(e.code(), grpc.StatusCode.OK)
        except Exception:
            print(d.logs())
            raise
        finally:
            branch.close()

    def test_an_agent_fails_over_when_its_replica_dies_and_moves_to_a_new_replica(self):
        d = self.d
        replica_a, replica_b = self.replicas("replica-a", "replica-b")
        # Replica C is in the agent's list (as behind one DNS name) but starts only later.
        replica_c = d.server("replica-c", postgres_dsn=self.dsn(), start=False)
        # Re-picking a replica at random every ~2 s.
        agent = d.agent(replica_a, "agent-ha", join_token=replica_a.generate_token(),
                        also_servers=[replica_b, replica_c], connection_max_age="2s")
        _, sid = replica_a.register_workload(agent, "ha/failover")
        branch = Branch("failover", agent, sid)

        def last_synced_port():
            ports = re.findall(r"synced with 127\.0\.0\.1:(\d+)", agent.log())
            return int(ports[-1]) if ports else None
        try:
            wait_for(branch.svid, LONG_TIMEOUT, what="an X.509 SVID through either replica")
            # Kill the replica the agent is using right now.
            wait_for(lambda: last_synced_port() == replica_a.port, LONG_TIMEOUT,
                     what="the agent syncing with replica A")
            replica_a.kill()
            # The agent keeps its identity and carries on with B: a new entry written through B
            # reaches it, and the SVID it already had is still served.
            self.wait_for_new_workload(replica_b, agent, "ha/after-failover",
                                       "after replica A died")
            branch.svid()
            self.assertTrue(agent.process.running())
            # A replica that joins later receives the agent without a restart of the agent.
            replica_c.start()
            wait_for(lambda: last_synced_port() == replica_c.port, LONG_TIMEOUT,
                     what="the agent moving to the new replica C")
        except Exception:
            print(d.logs())
            raise
        finally:
            branch.close()

    def test_an_evict_and_a_federated_bundle_through_one_replica_reach_the_other(self):
        d = self.d
        replica_a, replica_b = self.replicas("replica-a", "replica-b")
        agent = d.attested_agent(replica_b, "agent-on-b")
        partner = "spiffe://partner.org"

        def set_partner_bundle(name):
            path = d.path(name + ".pem")
            with open(path, "w") as f:
                f.write(self_signed_ca(name)[0].public_bytes(
                    serialization.Encoding.PEM).decode())
            replica_a.cli("bundle", "set", "-id", partner, "-path", path, check=True)
            return path

        set_partner_bundle("partner-ca-1")
        _, sid = replica_a.register_workload(agent, "ha/federated", "-federatesWith",
                                             "partner.org")
        branch = Branch("federated", agent, sid)
        try:
            wait_for(branch.svid, LONG_TIMEOUT, what="an SVID for the federating entry")

            def partner_der():
                bundles = branch.client.fetch_x509_bundles().bundles
                return bundles.get(partner)
            first = wait_for(partner_der, LONG_TIMEOUT, what="the partner bundle at B's agent")
            # A new partner CA written through A reaches B's agent.
            start = time.monotonic()
            set_partner_bundle("partner-ca-2")
            wait_for(lambda: partner_der() not in (None, first), LONG_TIMEOUT,
                     what="the changed partner bundle at B's agent")
            print("federated bundle set through A, served by B's agent after %.2f s" %
                  (time.monotonic() - start))
            # An eviction through A: B refuses the agent at its next call.
            b_offset = replica_b.process.log_size()
            start = time.monotonic()
            replica_a.cli("agent", "evict", "-spiffeID", agent.spiffe_id, check=True)
            wait_for(lambda: SERVER_REFUSED_RE.search(replica_b.process.log_since(b_offset)) or
                     "not attested or was evicted" in replica_b.process.log_since(b_offset),
                     LONG_TIMEOUT, what="replica B refusing the evicted agent")
            print("agent evicted through A, refused by B after %.2f s" %
                  (time.monotonic() - start))
        except Exception:
            print(d.logs())
            raise
        finally:
            branch.close()


def pg_ctl(*args):
    """pg_ctl on the test cluster (as its owner when we are root); raises on failure."""
    tool = os.environ.get("TRELLIS_TEST_PG_CTL")
    pgdata = os.environ.get("TRELLIS_TEST_PGDATA")
    if not tool or not pgdata:
        raise AssertionError("run through scripts/with-postgres.sh (TRELLIS_TEST_PG_CTL unset)")
    argv = [tool, "-D", pgdata, "-w", "-t", "60"] + list(args)
    if args and args[0] == "start":
        argv += ["-l", os.environ.get("TRELLIS_TEST_PG_LOG", os.devnull)]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--"] + argv
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120)


class PostgresOutageTest(ReplicasTest):
    """Stops the shared test cluster: registered to run alone."""
    DB_PREFIX = "trellis_outage_"

    def test_replicas_ride_out_a_postgres_outage_and_recover_by_themselves(self):
        d = self.d
        replica_a, = self.replicas("replica-a", health_port=free_port())
        replica_b, = self.replicas("replica-b", health_port=free_port())
        agent = d.attested_agent(replica_b, "agent-on-b")
        _, sid = replica_a.register_workload(agent, "ha/before-outage")
        branch = Branch("before-outage", agent, sid)
        stopped = False
        # Writes keep coming through replica A across the restart: none may be lost (a create
        # that answered OK is stored) or doubled (no SPIFFE ID stored twice).
        load_done = threading.Event()
        attempted, succeeded = [], []

        def write_load():
            n = 0
            while not load_done.is_set():
                load_id = "spiffe://example.org/ha/load-%d" % n
                n += 1
                attempted.append(load_id)
                r = replica_a.cli("entry", "create", "-parentID", agent.spiffe_id, "-spiffeID",
                                  load_id, "-selector", "unix:uid:4242")
                if r.ok:
                    succeeded.append(load_id)
        writer = threading.Thread(target=write_load)
        try:
            wait_for(branch.svid, LONG_TIMEOUT, what="an X.509 SVID before the outage")
            writer.start()
            wait_for(lambda: len(succeeded) >= 5, LONG_TIMEOUT, what="writes before the outage")
            pg_ctl("stop", "-m", "fast")
            stopped = True
            for replica in (replica_a, replica_b):
                wait_for(lambda: replica.health("/ready") == 500, LONG_TIMEOUT,
                         what="%s to report not ready" % replica.name)
                self.assertEqual(replica.health("/live"), 200)
            # Writes are refused with a clear UNAVAILABLE, and nothing is half written.
            refused = replica_a.cli("entry", "create", "-parentID", agent.spiffe_id,
                                    "-spiffeID", "spiffe://example.org/ha/during-outage",
                                    "-selector", "unix:uid:1")
            self.assertFalse(refused.ok, refused.stdout)
            self.assertIn("UNAVAILABLE", (refused.stdout + refused.stderr).upper())
            # The agent keeps syncing with its replica from memory and serving its SVID.
            offset = agent.process.log_size()
            wait_for(lambda: "synced with" in agent.process.log_since(offset), LONG_TIMEOUT,
                     what="a sync served during the outage")
            branch.svid()
            pg_ctl("start")
            stopped = False
            for replica in (replica_a, replica_b):
                wait_for(lambda: replica.health("/ready") == 200, LONG_TIMEOUT,
                         what="%s to be ready again without a restart" % replica.name)
            # The load goes on after the restart, then stops.
            resumed = len(succeeded)
            wait_for(lambda: len(succeeded) >= resumed + 5, LONG_TIMEOUT,
                     what="writes after the restart")
            load_done.set()
            writer.join(timeout=LONG_TIMEOUT)
            listed = json.loads(replica_b.cli("entry", "show", "-output", "json",
                                              check=True).stdout).get("entries", [])
            stored = [e["spiffe_id"] for e in listed if "/ha/load-" in e["spiffe_id"]]
            self.assertEqual(len(stored), len(set(stored)), "an entry was stored twice")
            self.assertLessEqual(set(succeeded), set(stored), "an acknowledged write was lost")
            self.assertLessEqual(set(stored), set(attempted))
            print("%d writes attempted across the restart, %d acknowledged, %d stored" %
                  (len(attempted), len(succeeded), len(stored)))
            # Writes work again, through either replica, and reach the other's agent.
            self.wait_for_new_workload(replica_a, agent, "ha/after-outage", "after the outage")
            # The write refused during the outage left nothing behind.
            listed = replica_b.cli("entry", "show", "-output", "json", check=True).stdout
            self.assertIn("after-outage", listed)
            self.assertNotIn("during-outage", listed)
        except Exception:
            print(d.logs())
            raise
        finally:
            load_done.set()
            if writer.is_alive():
                writer.join(timeout=LONG_TIMEOUT)
            if stopped:
                pg_ctl("start")
            branch.close()


if __name__ == "__main__":
    unittest.main()
