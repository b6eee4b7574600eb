# End-to-end tests of nested deployments: a root server, downstream servers each next to an agent
# of the tier above, and workloads in every branch, all real processes on this machine.
"""Nested topology tests.

The full tree built by build_tree():

    root R --- agent root-wl        (root-tier workload)
           |-- agent root-host-a -- region A --- agent region-a-wl   (region A workload)
           |                                 |-- agent region-a-host-c -- cluster C
           |                                                                 |-- agent cluster-c-wl
           |-- agent root-host-b -- region B --- agent region-b-wl   (region B workload)

Every process runs as this uid, so an agent hosting a downstream server hosts nothing else: the
parent agent is what tells a server's identity from a workload's.
"""

import json
import os
import re
import shutil
import sys
import threading
import time
import unittest

import grpc
from cryptography import x509

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import workload_client as wl  # noqa: E402
from harness import DOWNSTREAM_START_TIMEOUT, Deployment, wait_for  # noqa: E402

TD_ID = "spiffe://" + harness.TRUST_DOMAIN
AUDIENCE = "nested-test"
BRANCHES = ("root", "region-a", "region-b", "cluster-c")
LONG_TIMEOUT = 2 * harness.DEFAULT_TIMEOUT
# The status code as gRPC names it, or in the CamelCase form SPIRE's CLI prints.
FAILED_PRECONDITION_RE = re.compile(r"FAILED_PRECONDITION|FailedPrecondition")


# ---- certificate and token helpers ---------------------------------------------------------

def ski(cert):
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()


def signed_by(cert, issuer):
    if cert.issuer != issuer.subject:
        return False
    try:
        wl.verify_signed_by(cert, issuer)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not this issuer"
        return False


def chain_root_id(chain, roots):
    """Authority ID (SKI) of the bundle root the chain verifies to."""
    return ski(wl.verify_chain_to_bundle(chain, roots))


def jwt_kid(token):
    return wl.jwt_parts(token)[0]["kid"]


def jwks_kids(jwks):
    return {k.get("kid") for k in jwks.get("keys", [])}


def pem_certs(text):
    blocks = text.split("-----END CERTIFICATE-----")
    return [x509.load_pem_x509_certificate((b + "-----END CERTIFICATE-----\n").encode())
            for b in blocks if "-----BEGIN CERTIFICATE-----" in b]


# ---- topology --------------------------------------------------------------------------------

class Branch:
    """One workload identity under one agent, with its own Workload API channel."""

    def __init__(self, name, agent, spiffe_id):
        self.name = name
        self.agent = agent
        self.spiffe_id = spiffe_id
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = wl.WorkloadClient(self.agent.socket_path)
        return self._client

    def connect(self):
        """A separate channel to the same agent (for use from another thread)."""
        return Branch(self.name, self.agent, self.spiffe_id)

    def close(self):
        if self._client is not None:
            self._client.close()
            self._client = None

    def svid(self):
        """(chain, roots) of this workload's current X.509 SVID (leaf first; the bundle)."""
        resp = self.client.fetch_x509(timeout=20)
        for svid in resp.svids:
            if svid.spiffe_id == self.spiffe_id:
                return wl.split_der_certs(svid.x509_svid), wl.split_der_certs(svid.bundle)
        raise AssertionError("%s: no SVID for %s in %s" % (
            self.name, self.spiffe_id, [s.spiffe_id for s in resp.svids]))

    def x509_roots(self):
        return wl.split_der_certs(self.client.fetch_x509_bundles(timeout=20).bundles[TD_ID])

    def jwt_bundle(self):
        return json.loads(self.client.fetch_jwt_bundles(timeout=20).bundles[TD_ID])

    def jwt(self):
        resp = self.client.fetch_jwt([AUDIENCE], spiffe_id=self.spiffe_id, timeout=20)
        if len(resp.svids) != 1 or resp.svids[0].spiffe_id != self.spiffe_id:
            raise AssertionError("%s: unexpected JWT-SVIDs %s" % (
                self.name, [s.spiffe_id for s in resp.svids]))
        return resp.svids[0].svid

    def validate(self, token):
        """ValidateJWTSVID at this branch's agent; returns the validated SPIFFE ID."""
        return self.client.validate_jwt(AUDIENCE, token, timeout=20).spiffe_id


class Tree:
    def __init__(self):
        self.servers = {}
        self.branches = {}

    @property
    def root(self):
        return self.servers["root"]

    def close(self):
        for b in self.branches.values():
            b.close()


def build_tree(d, root_kwargs=None, region_kwargs=None, cluster=True):
    """Builds the tree in the module docstring (without cluster C when cluster=False) and waits
    until every workload holds its X.509 SVID."""
    tree = Tree()
    root = d.server("root", **(root_kwargs or {}))
    tree.servers["root"] = root
    hosts = {r: d.attested_agent(root, "root-host-" + r[-1]) for r in ("region-a", "region-b")}
    agents = {"root": d.attested_agent(root, "root-wl")}
    # Both regions start together: each blocks until the root has minted its CA.
    for r in ("region-a", "region-b"):
        tree.servers[r] = d.downstream_server(root, hosts[r], r, start=False,
                                              **(region_kwargs or {}))
        tree.servers[r].start(wait=False)
    for r in ("region-a", "region-b"):
        tree.servers[r].wait_healthy(DOWNSTREAM_START_TIMEOUT)
        agents[r] = d.attested_agent(tree.servers[r], r + "-wl")
    if cluster:
        host_c = d.attested_agent(tree.servers["region-a"], "region-a-host-c")
        tree.servers["cluster-c"] = d.downstream_server(tree.servers["region-a"], host_c,
                                                        "cluster-c", **(region_kwargs or {}))
        agents["cluster-c"] = d.attested_agent(tree.servers["cluster-c"], "cluster-c-wl")
    for name, agent in agents.items():
        _, sid = agent.register_workload(name + "/workload")
        tree.branches[name] = Branch(name, agent, sid)
    for b in tree.branches.values():
        wait_for(b.svid, LONG_TIMEOUT, what="an X.509 SVID for %s" % b.spiffe_id)
    return tree


class X509Watcher(threading.Thread):
    """Reads one FetchX509SVID stream in the background, keeping each message's leaf serials."""

    def __init__(self, socket_path):
        super().__init__(daemon=True)
        self.client = wl.WorkloadClient(socket_path)
        self.stream = self.client.x509_stream(timeout=600)
        self.lock = threading.Lock()
        self.messages = []
        self.error = None

    def run(self):
        try:
            for msg in self.stream:
                serials = {s.spiffe_id: (wl.split_der_certs(s.x509_svid), s) for s in msg.svids}
                with self.lock:
                    self.messages.append(serials)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                self.error = e

    def first(self, spiffe_id):
        def present():
            if self.error is not None:
                raise AssertionError("stream ended: %r" % self.error)
            with self.lock:
                for m in self.messages:
                    if spiffe_id in m:
                        return m[spiffe_id]
            return None
        return wait_for(present, what="%s on the stream" % spiffe_id)

    def rotated(self, spiffe_id, old_serial, timeout):
        """Waits for a message carrying spiffe_id with a serial other than old_serial."""
        def arrived():
            if self.error is not None:
                raise AssertionError("stream ended: %r" % self.error)
            with self.lock:
                for m in self.messages:
                    if spiffe_id in m and m[spiffe_id][0][0].serial_number != old_serial:
                        return m[spiffe_id]
            return None
        return wait_for(arrived, timeout, what="a rotated SVID for %s on the stream" % spiffe_id)

    def close(self):
        self.stream.cancel()
        self.join(10)
        self.client.close()


class CrossBranchPoller(threading.Thread):
    """Continuously checks one branch against all the others, as a workload would.

    Each round fetches this branch's current X.509 SVID and verifies it against every other
    branch's current X.509 bundle, then fetches a JWT-SVID and validates it at every other
    branch's agent. Every exception is a recorded failure."""

    def __init__(self, branch, others, stop, pause=0.1):
        super().__init__(daemon=True)
        self.branch = branch.connect()
        self.others = [o.connect() for o in others]
        self.stop_event = stop
        self.pause = pause
        self.lock = threading.Lock()
        self.checks = 0
        self.rounds = 0
        self.round_started = 0.0
        self.last_round_started = 0.0  # start time of the last completed round
        self.failures = []

    def run(self):
        try:
            while not self.stop_event.is_set():
                started = time.monotonic()
                with self.lock:
                    self.round_started = started
                self._round()
                with self.lock:
                    self.rounds += 1
                    self.last_round_started = started
                self.stop_event.wait(self.pause)
        finally:
            for b in [self.branch] + self.others:
                b.close()

    def _fail(self, what, error):
        with self.lock:
            self.failures.append("%.3f %s: %s: %r" % (time.time(), self.branch.name, what,
                                                      error))

    def _round(self):
        try:
            chain, _ = self.branch.svid()
        except Exception as e:  # noqa: BLE001
            self._fail("fetch X.509 SVID", e)
            chain = None
        for other in self.others:
            if chain is None:
                break
            try:
                wl.verify_chain_to_bundle(chain, other.x509_roots())
                with self.lock:
                    self.checks += 1
            except Exception as e:  # noqa: BLE001
                self._fail("X.509 SVID against %s's bundle" % other.name, e)
        try:
            token = self.branch.jwt()
        except Exception as e:  # noqa: BLE001
            self._fail("fetch JWT-SVID", e)
            return
        for other in self.others:
            try:
                got = other.validate(token)
                if got != self.branch.spiffe_id:
                    raise AssertionError("validated as %s" % got)
                with self.lock:
                    self.checks += 1
            except Exception as e:  # noqa: BLE001
                self._fail("JWT-SVID (kid %s) at %s's agent" % (jwt_kid(token), other.name), e)

    def completed_round_since(self, t):
        with self.lock:
            return self.rounds > 0 and self.last_round_started >= t


# ---- tests -----------------------------------------------------------------------------------

class NestedTest(unittest.TestCase):
    """Each case builds its own tree (a few seconds) so that no case depends on another."""

    def setUp(self):
        self.d = Deployment(prefix="trellis-nested-")
        self.addCleanup(self.d.close)
        # Runs before close(): cleanups are last in, first out.
        self._problems_before = self._problem_count()
        self.addCleanup(self._logs_on_failure)

    def _problem_count(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        return len(result.failures) + len(result.errors) if result is not None else 0

    def _logs_on_failure(self):
        if self._problem_count() > self._problems_before:
            sys.stderr.write("\n" + self.d.logs() + "\n")

    def tree(self, **kwargs):
        tree = build_tree(self.d, **kwargs)
        self.addCleanup(tree.close)
        return tree

    def openssl_verify(self, label, chain, roots):
        result = wl.openssl_verify(self.d.path("verify", label), chain, roots)
        self.assertEqual(result.returncode, 0, "%s: %s%s" % (label, result.stdout, result.stderr))
        self.assertIn("leaf.pem: OK", result.stdout, label)

    def assert_ca(self, cert):
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        self.assertTrue(bc.ca, cert.subject)
        self.assertEqual(wl.uri_sans(cert), [TD_ID])

    # a. Three tiers: every branch trusts every other branch, with no extra configuration.

    def test_x509_svids_verify_across_all_branches_and_tiers(self):
        tree = self.tree()
        root_roots = pem_certs(tree.root.bundle_pem())
        root_id = tree.root.authorities("x509")["active"]["authority_id"]
        root_cert = [c for c in root_roots if ski(c) == root_id]
        self.assertEqual(len(root_cert), 1, "active root %s in bundle show" % root_id)
        root_cert = root_cert[0]

        svids = {name: b.svid() for name, b in tree.branches.items()}
        for name, (chain, roots) in svids.items():
            self.assertEqual(wl.uri_sans(chain[0]), [tree.branches[name].spiffe_id])
            # Every tier hands out the root tier's roots and nothing else.
            self.assertEqual(sorted(ski(c) for c in roots), sorted(ski(c) for c in root_roots),
                             name)
        for name, server in tree.servers.items():
            self.assertEqual(sorted(ski(c) for c in pem_certs(server.bundle_pem())),
                             sorted(ski(c) for c in root_roots), "bundle show on " + name)

        # Chain shapes: root tier [leaf]; region [leaf, region CA]; cluster [leaf, cluster CA,
        # region A CA]; each CA is the issuing server's active authority.
        self.assertEqual(len(svids["root"][0]), 1)
        self.assertTrue(signed_by(svids["root"][0][0], root_cert))
        for region in ("region-a", "region-b"):
            chain = svids[region][0]
            self.assertEqual(len(chain), 2, region)
            self.assert_ca(chain[1])
            active = tree.servers[region].authorities("x509")["active"]
            self.assertEqual(ski(chain[1]), active["authority_id"], region)
            self.assertTrue(signed_by(chain[0], chain[1]), region)
            self.assertTrue(signed_by(chain[1], root_cert), region)
            self.assertEqual(active.get("upstream_authority_subject_key_id"), root_id, region)
        chain = svids["cluster-c"][0]
        self.assertEqual(len(chain), 3)
        for ca in chain[1:]:
            self.assert_ca(ca)
        cluster_active = tree.servers["cluster-c"].authorities("x509")["active"]
        region_a_id = tree.servers["region-a"].authorities("x509")["active"]["authority_id"]
        self.assertEqual(ski(chain[1]), cluster_active["authority_id"])
        self.assertEqual(ski(chain[2]), region_a_id)
        self.assertEqual(cluster_active.get("upstream_authority_subject_key_id"), region_a_id)
        self.assertTrue(signed_by(chain[0], chain[1]))
        self.assertTrue(signed_by(chain[1], chain[2]))
        self.assertTrue(signed_by(chain[2], root_cert))

        # Every branch's SVID verifies against every branch's bundle, with OpenSSL.
        for src, (chain, _) in svids.items():
            for dst, branch in tree.branches.items():
                self.openssl_verify("%s-in-%s" % (src, dst), chain, branch.x509_roots())

    def test_jwt_svids_validate_across_branches(self):
        tree = self.tree()
        tokens = {name: b.jwt() for name, b in tree.branches.items()}
        root_kids = jwks_kids(tree.root.bundle_spiffe())
        for name, token in tokens.items():
            # Each branch's token is signed by its own server's active key, published to the
            # root bundle.
            kid = jwt_kid(token)
            self.assertEqual(kid, tree.servers[name].authorities("jwt")["active"]["authority_id"],
                             name)
            self.assertIn(kid, root_kids, name)
        directions = [(s, t) for s in BRANCHES for t in BRANCHES if s != t]
        self.assertIn(("cluster-c", "region-b"), directions)
        for src, dst in directions:
            kid = jwt_kid(tokens[src])
            # The key travels up to the root and down to the other branch on streams.
            wait_for(lambda: kid in jwks_kids(tree.branches[dst].jwt_bundle()),
                     what="kid %s of %s in %s's JWT bundle" % (kid, src, dst))
            got = tree.branches[dst].validate(tokens[src])
            self.assertEqual(got, tree.branches[src].spiffe_id, "%s -> %s" % (src, dst))
            # A validator reading the other branch's JWKS itself agrees.
            _, claims = wl.verify_jwt_with_jwks(tokens[src], tree.branches[dst].jwt_bundle())
            self.assertEqual(claims["sub"], tree.branches[src].spiffe_id)
        # A token for another audience is still refused across branches.
        with self.assertRaises(grpc.RpcError) as err:
            tree.branches["region-b"].client.validate_jwt("another-audience",
                                                          tokens["cluster-c"])
        self.assertEqual(err.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    # b. Only an entry marked -downstream lets a server join the tree.

    def test_server_without_downstream_entry_is_refused(self):
        d = self.d
        root = d.server("root")
        host = d.attested_agent(root, "root-host")
        bundle_before = root.bundle_spiffe()
        rogue = d.downstream_server(root, host, "rogue", downstream=False, start=False)
        rogue.start(wait=False)
        rc = rogue.process.wait_exit(DOWNSTREAM_START_TIMEOUT)
        log = rogue.process.log()
        self.assertNotEqual(rc, 0, log[-3000:])
        self.assertIn("PERMISSION_DENIED", log)
        # Past the harness's own first line, which names the command.
        self.assertIn("downstream", log.split("\n", 1)[1])
        # It got neither a CA nor a published JWT key out of the root.
        self.assertEqual(jwks_kids(root.bundle_spiffe()), jwks_kids(bundle_before))

        # The same server joins once its entry says -downstream.
        uid = harness.uid_selector()
        root.cli("entry", "update", "-entryID", rogue.downstream_entry_id,
                 "-parentID", host.spiffe_id, "-spiffeID", rogue.downstream_id,
                 "-selector", uid, "-downstream", check=True)
        rogue.start(timeout=DOWNSTREAM_START_TIMEOUT)
        active = rogue.authorities("x509")["active"]
        self.assertEqual(active.get("upstream_authority_subject_key_id"),
                         root.authorities("x509")["active"]["authority_id"])

    # c. The root tier and sibling regions are not on the issuing path.

    def test_regions_keep_issuing_while_root_is_down_and_survive_a_sibling_loss(self):
        tree = self.tree(region_kwargs={"default_x509_svid_ttl": "30s"}, cluster=False)
        region_a, region_b = tree.servers["region-a"], tree.servers["region-b"]
        wa, wb = tree.branches["region-a"], tree.branches["region-b"]
        ca_a = region_a.authorities("x509")["active"]["authority_id"]

        tree.root.stop()
        self.assertFalse(tree.root.process.running())

        # New entries in both regions get SVIDs.
        for branch in (wa, wb):
            _, sid = branch.agent.register_workload(branch.name + "/after-root-stopped")
            fresh = Branch(branch.name, branch.agent, sid)
            self.addCleanup(fresh.close)
            chain, roots = wait_for(fresh.svid, LONG_TIMEOUT, what="an SVID for " + sid)
            self.assertEqual(len(chain), 2)
            self.openssl_verify(sid.rsplit("/", 2)[-2] + "-new", chain, roots)

        # Existing SVIDs keep rotating on their streams.
        watchers = {}
        for branch in (wa, wb):
            watchers[branch.name] = X509Watcher(branch.agent.socket_path)
            self.addCleanup(watchers[branch.name].close)
            watchers[branch.name].start()
        for branch in (wa, wb):
            chain, _ = watchers[branch.name].first(branch.spiffe_id)
            new_chain, svid = watchers[branch.name].rotated(
                branch.spiffe_id, chain[0].serial_number, LONG_TIMEOUT)
            self.assertGreater(new_chain[0].not_valid_after, chain[0].not_valid_after)
            self.openssl_verify(branch.name + "-rotated", new_chain,
                                wl.split_der_certs(svid.bundle))

        # Region A restarts with the root still down, on its persisted CA, and keeps issuing.
        region_a.stop()
        region_a.start(timeout=DOWNSTREAM_START_TIMEOUT)
        self.assertEqual(region_a.authorities("x509")["active"]["authority_id"], ca_a)
        _, sid = wa.agent.register_workload("region-a/after-restart")
        after_restart = Branch("region-a", wa.agent, sid)
        self.addCleanup(after_restart.close)
        chain, roots = wait_for(after_restart.svid, LONG_TIMEOUT, what="an SVID for " + sid)
        self.assertEqual(ski(chain[1]), ca_a)
        self.openssl_verify("region-a-after-restart", chain, roots)

        # Region B loses its datastore; region A does not notice.
        region_b.stop()
        shutil.rmtree(region_b.data_dir)
        self.assertFalse(os.path.exists(region_b.data_dir))
        chain, roots = wa.svid()
        self.openssl_verify("region-a-after-b-lost", chain, roots)
        _, sid = wa.agent.register_workload("region-a/after-b-lost")
        after_loss = Branch("region-a", wa.agent, sid)
        self.addCleanup(after_loss.close)
        chain, roots = wait_for(after_loss.svid, LONG_TIMEOUT, what="an SVID for " + sid)
        self.openssl_verify("region-a-new-after-b-lost", chain, roots)
        self.assertTrue(region_a.process.running())
        self.assertTrue(region_a.cli("healthcheck").ok)

    # Out-of-order rotation steps are refused rather than breaking a tier.

    def test_out_of_order_authority_steps_are_refused(self):
        root = self.d.server("root")
        host = self.d.attested_agent(root, "root-host")
        region = self.d.downstream_server(root, host, "region")

        def refused(server, kind, action, authority_id=None):
            r = server.localauthority(kind, action, authority_id, check=False)
            self.assertEqual(r.returncode, 1, "%s %s %s on %s: %r" % (
                kind, action, authority_id, server.name, r))
            self.assertTrue(r.stderr.strip(), "no reason given: %r" % r)
            return r

        for kind in ("x509", "jwt"):
            active = root.authorities(kind)["active"]["authority_id"]
            refused(root, kind, "taint", active)
            refused(root, kind, "revoke", active)
            prepared = root.localauthority(kind, "prepare")["authority_id"]
            self.assertRegex(refused(root, kind, "prepare").stderr, FAILED_PRECONDITION_RE)
            refused(root, kind, "activate", active)
            root.localauthority(kind, "activate", prepared)
            # The previous authority is now old but not tainted: revoking it is refused.
            self.assertEqual(root.authorities(kind)["old"]["authority_id"], active)
            refused(root, kind, "revoke", active)
            self.assertEqual(root.authorities(kind)["active"]["authority_id"], prepared)

        # A downstream CA is an intermediate outside the bundle: it is rotated with
        # prepare/activate, and tainting it locally is refused.
        old = region.authorities("x509")["active"]["authority_id"]
        new = region.localauthority("x509", "prepare")["authority_id"]
        region.localauthority("x509", "activate", new)
        self.assertEqual(region.authorities("x509")["old"]["authority_id"], old)
        refused(region, "x509", "taint", old)
        refused(region, "x509", "revoke", old)
        self.assertEqual(region.authorities("x509")["active"]["upstream_authority_subject_key_id"],
                         root.authorities("x509")["active"]["authority_id"])

    # d. Rotating the root authorities, the documented way, breaks nothing anywhere.

    def test_root_authority_rotation_reaches_every_tier_without_failures(self):
        tree = self.tree(
            root_kwargs={"default_x509_svid_ttl": "20s", "default_jwt_svid_ttl": "20s"},
            region_kwargs={"default_x509_svid_ttl": "30s"})
        root = tree.root
        branches = tree.branches
        stop = threading.Event()
        pollers = [CrossBranchPoller(b, [o for o in branches.values() if o is not b], stop)
                   for b in branches.values()]
        self.addCleanup(lambda: [p.join(30) for p in pollers])
        self.addCleanup(stop.set)
        for p in pollers:
            p.start()

        def all_pollers_rounded():
            since = time.monotonic()
            wait_for(lambda: all(p.completed_round_since(since) for p in pollers),
                     LONG_TIMEOUT, what="a full round of every poller")

        all_pollers_rounded()
        every_server = list(tree.servers.values())

        # --- X.509 ---
        old = root.authorities("x509")["active"]["authority_id"]
        region_cas = {r: tree.servers[r].authorities("x509")["active"]["authority_id"]
                      for r in ("region-a", "region-b", "cluster-c")}
        new = root.localauthority("x509", "prepare")["authority_id"]
        self.assertNotEqual(new, old)
        self.assertEqual(root.authorities("x509")["prepared"]["authority_id"], new)

        def everywhere_roots(pred, what):
            def check():
                for b in branches.values():
                    if not pred({ski(c) for c in b.x509_roots()}):
                        raise AssertionError("%s's workload bundle" % b.name)
                for s in every_server:
                    if not pred({ski(c) for c in pem_certs(s.bundle_pem())}):
                        raise AssertionError("bundle show on %s" % s.name)
                return True
            wait_for(check, LONG_TIMEOUT, what=what)

        everywhere_roots(lambda ids: {old, new} <= ids, "the prepared root in every bundle")
        root.localauthority("x509", "activate", new)
        wait_for(lambda: chain_root_id(*branches["root"].svid()) == new, LONG_TIMEOUT,
                 what="root-tier SVIDs from the new root")
        root.localauthority("x509", "taint", old)

        def off_old_root():
            for b in branches.values():
                chain, roots = b.svid()
                if chain_root_id(chain, roots) != new:
                    raise AssertionError("%s still chains to the old root" % b.name)
            return True
        wait_for(off_old_root, LONG_TIMEOUT, what="every branch off the tainted root")
        # The downstream CAs rotated to ones under the new root.
        for r, before in region_cas.items():
            active = tree.servers[r].authorities("x509")["active"]
            self.assertNotEqual(active["authority_id"], before, r)
        self.assertEqual(
            tree.servers["region-a"].authorities("x509")["active"]
            ["upstream_authority_subject_key_id"], new)

        # --- JWT ---
        old_kid = root.authorities("jwt")["active"]["authority_id"]
        new_kid = root.localauthority("jwt", "prepare")["authority_id"]
        self.assertNotEqual(new_kid, old_kid)
        wait_for(lambda: all(new_kid in jwks_kids(b.jwt_bundle()) for b in branches.values()),
                 LONG_TIMEOUT, what="the prepared JWT key in every branch's JWT bundle")
        root.localauthority("jwt", "activate", new_kid)
        wait_for(lambda: jwt_kid(branches["root"].jwt()) == new_kid, LONG_TIMEOUT,
                 what="root-tier JWT-SVIDs signed by the new key")
        root.localauthority("jwt", "taint", old_kid)
        self.assertEqual(jwt_kid(branches["root"].jwt()), new_kid)

        # --- revoke both old authorities once nothing uses them ---
        all_pollers_rounded()

        def revoke(kind, authority_id):
            def done():
                r = root.localauthority(kind, "revoke", authority_id, check=False)
                if r.ok:
                    return True
                # "Still in use" is a refusal that clears as SVIDs re-mint; anything else is
                # final.
                if not FAILED_PRECONDITION_RE.search(r.stderr):
                    raise _Final(r)
                return False
            try:
                wait_for(done, LONG_TIMEOUT, what="revoking %s authority %s" % (kind,
                                                                                authority_id))
            except _Final as e:
                self.fail("revoke refused: %r" % (e.args[0],))
        revoke("x509", old)
        everywhere_roots(lambda ids: old not in ids and new in ids, "the old root gone")
        revoke("jwt", old_kid)
        wait_for(lambda: not any(old_kid in jwks_kids(b.jwt_bundle())
                                 for b in branches.values()),
                 LONG_TIMEOUT, what="the old JWT key gone from every branch")
        self.assertNotIn(old_kid, jwks_kids(root.bundle_spiffe()))

        all_pollers_rounded()
        stop.set()
        for p in pollers:
            p.join(60)
            self.assertFalse(p.is_alive(), p.branch.name)
        failures = [f for p in pollers for f in p.failures]
        self.assertEqual(failures, [], "%d failed checks, first: %s" % (
            len(failures), "\n".join(failures[:20])))
        for p in pollers:
            self.assertGreaterEqual(p.rounds, 10, p.branch.name)
        checks = sum(p.checks for p in pollers)
        self.assertGreaterEqual(checks, 10 * 6 * len(pollers))
        sys.stderr.write("\n  rotation: %d poller rounds, %d cross-branch checks, 0 failures\n"
                         % (sum(p.rounds for p in pollers), checks))


class _Final(Exception):
    pass


if __name__ == "__main__":
    unittest.main()
