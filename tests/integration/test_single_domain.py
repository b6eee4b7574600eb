# End-to-end tests of one trust domain: a real trellis-server and trellis-agent on SQLite, and
# this process as the workload calling the Workload API over the agent's Unix socket.
import datetime
import json
import os
import re
import subprocess
import sys
import time
import unittest

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import workload_client as wl  # noqa: E402
from harness import Deployment, agent_field, agent_id_for_token, spiffe_id, wait_for  # noqa: E402

TD_ID = "spiffe://" + harness.TRUST_DOMAIN
UID_SELECTOR = "unix:uid:%d" % os.getuid()
# How a refusal shows in the logs: the status code name (or its words), or the server's reason.
def self_signed_ca(common_name):
    """A fresh self-signed P-256 CA valid for a day: (certificate, private key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.utcnow()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


AGENT_REFUSED_RE = re.compile(r"permission[_ ]denied|banned", re.I)
SERVER_REFUSED_RE = re.compile(r"permission[_ ]denied|agent is banned", re.I)
ATTEST_FAILED_RE = re.compile(r"permission[_ ]denied|attest\w*[^\n]*(error|fail|refused|denied)|"
                              r"(error|fail)[^\n]*attest", re.I)


def svid_ids(response):
    return [s.spiffe_id for s in response.svids]


def leaf_serial(response, index=0):
    return wl.split_der_certs(response.svids[index].x509_svid)[0].serial_number


class DeploymentTest(unittest.TestCase):
    """Each test gets a fresh deployment; its process logs are printed when the test fails."""

    def setUp(self):
        self.d = Deployment()
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

    def setup_with_token(self, **server_kwargs):
        """A server, a join token, an agent attested with it, and an entry for this uid."""
        server = self.d.server(**server_kwargs)
        token = server.generate_token()
        agent = self.d.agent(server, join_token=token)
        agent_id = agent_id_for_token(token)
        return server, agent, token, agent_id

    def client(self, agent):
        c = wl.WorkloadClient(agent.socket_path)
        self.addCleanup(c.close)
        return c

    def wait_for_svids(self, client, expected_ids, timeout=harness.DEFAULT_TIMEOUT):
        """Polls FetchX509SVID until the caller holds exactly expected_ids (in any order)."""
        def has_them():
            resp = client.fetch_x509(timeout=10)
            return resp if sorted(svid_ids(resp)) == sorted(expected_ids) else None
        return wait_for(has_them, timeout, what="SVIDs %s" % expected_ids)

    def check_x509_svid(self, svid, expected_id):
        chain = wl.split_der_certs(svid.x509_svid)
        roots = wl.split_der_certs(svid.bundle)
        self.assertGreaterEqual(len(chain), 1)
        self.assertGreaterEqual(len(roots), 1)
        leaf = chain[0]
        wl.verify_chain_to_bundle(chain, roots)
        self.assertEqual(wl.uri_sans(leaf), [expected_id])
        bc = leaf.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS)
        self.assertFalse(bc.value.ca)
        ku = leaf.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE)
        self.assertTrue(ku.critical)
        self.assertTrue(ku.value.digital_signature)
        self.assertFalse(ku.value.key_cert_sign)
        self.assertTrue(wl.key_matches_cert(svid.x509_svid_key, leaf))
        eku = leaf.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
        self.assertIn(ExtendedKeyUsageOID.SERVER_AUTH, list(eku))
        self.assertIn(ExtendedKeyUsageOID.CLIENT_AUTH, list(eku))
        leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER)
        leaf.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
        if len(leaf.subject) == 0:
            san = leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
            self.assertTrue(san.critical, "an empty subject needs a critical SAN")
        result = wl.openssl_verify(self.d.path("verify"), chain, roots)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("leaf.pem: OK", result.stdout)
        return leaf


class SingleDomainTest(DeploymentTest):

    def test_join_token_attests_once_and_reuse_is_refused(self):
        server, agent, token, agent_id = self.setup_with_token()
        wait_for(lambda: [a for a in server.agents()
                          if agent_field(a, "spiffe_id", "id") == agent_id],
                 what="agent %s listed" % agent_id)
        server.create_entry(agent_id, spiffe_id("workload"), [UID_SELECTOR])
        self.wait_for_svids(self.client(agent), [spiffe_id("workload")])

        # Same token on a second agent: attestation must fail and it must not serve SVIDs.
        second = self.d.agent(server, name="second", join_token=token, wait=False)

        def refused():
            if not second.process.running():
                return second.process.returncode() != 0
            return ATTEST_FAILED_RE.search(second.log())
        wait_for(refused, what="the second agent to be refused")
        if second.process.running():
            try:
                resp = self.client(second).fetch_x509(timeout=5)
                self.fail("second agent served SVIDs %s" % svid_ids(resp))
            except grpc.RpcError as e:
                self.assertNotEqual(e.code(), grpc.StatusCode.OK)
        self.assertEqual(len(server.agents()), 1)

    def test_x509pop_attestation(self):
        pki = self.d.path("x509pop")
        os.makedirs(pki)
        ca, ca_key = self_signed_ca("Node CA")
        ca_name = ca.subject
        now = datetime.datetime.utcnow()
        node_key = ec.generate_private_key(ec.SECP256R1())
        node = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node-1")]))
                .issuer_name(ca_name).public_key(node_key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                             False, False), critical=True)
                .sign(ca_key, hashes.SHA256()))
        paths = {n: os.path.join(pki, n) for n in ("ca.pem", "node.pem", "node.key")}
        with open(paths["ca.pem"], "wb") as f:
            f.write(ca.public_bytes(serialization.Encoding.PEM))
        with open(paths["node.pem"], "wb") as f:
            f.write(node.public_bytes(serialization.Encoding.PEM))
        with open(paths["node.key"], "wb") as f:
            f.write(node_key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        os.chmod(paths["node.key"], 0o600)

        server = self.d.server(extra_attestors={"x509pop": {"ca_bundle_path": paths["ca.pem"]}})
        fingerprint = node.fingerprint(hashes.SHA1()).hex()
        agent_id = "%s/spire/agent/x509pop/%s" % (TD_ID, fingerprint)
        server.create_entry(agent_id, spiffe_id("pop-workload"), [UID_SELECTOR])
        agent = self.d.agent(server, node_attestor="x509pop",
                             attestor_data={"private_key_path": paths["node.key"],
                                            "certificate_path": paths["node.pem"]})
        resp = self.wait_for_svids(self.client(agent), [spiffe_id("pop-workload")])
        self.check_x509_svid(resp.svids[0], spiffe_id("pop-workload"))
        shown = server.agent(agent_id)
        self.assertEqual(agent_field(shown, "attestation_type"), "x509pop")
        selectors = {(sel.get("type"), sel.get("value"))
                     for sel in agent_field(shown, "selectors") or []}
        self.assertIn(("x509pop", "subject:cn:node-1"), selectors)
        self.assertIn(("x509pop", "ca:fingerprint:" + ca.fingerprint(hashes.SHA1()).hex()),
                      selectors)

    def test_agent_with_ten_thousand_entries_syncs_in_pages_and_mints_in_rounds(self):
        server, agent, _, agent_id = self.setup_with_token()
        # 10,000 entries for this agent: ten for this process, the rest for another uid, so
        # the agent syncs and mints them all while the workload's answer stays small.
        mine = [spiffe_id("many/mine-%d" % i) for i in range(10)]
        entries = [{"spiffe_id": sid, "parent_id": agent_id,
                    "selectors": [{"type": "unix", "value": UID_SELECTOR[5:]}]} for sid in mine]
        entries += [{"spiffe_id": spiffe_id("many/other-%d" % i), "parent_id": agent_id,
                     "selectors": [{"type": "unix", "value": "uid:4242424"}]}
                    for i in range(10000 - len(mine))]
        data = self.d.path("many.json")
        with open(data, "w") as f:
            json.dump({"entries": entries}, f)
        created = server.cli("entry", "create", "-data", data, check=True, timeout=300).stdout
        first_id = re.search(r"Entry ID\s*:\s*(\S+)\nSPIFFE ID\s*:\s*%s\n" % re.escape(mine[0]),
                             created).group(1)

        client = self.client(agent)
        resp = self.wait_for_svids(client, mine, timeout=300)
        for svid in resp.svids[:2]:
            self.check_x509_svid(svid, svid.spiffe_id)

        def minted():
            return sum(int(n) for n in re.findall(r"minted (\d+) workload SVID", agent.log()))
        wait_for(lambda: minted() >= 10000, 300, what="10,000 SVIDs minted")
        # No message near gRPC's 4 MB limit: the sync came in pages, the minting in rounds of
        # at most 1,000 in batches of at most 10.
        # (10,000 known ids go up 2,000 a page; changed entries come down 1,000 a page.)
        pages = [int(p) for p in re.findall(r"changed entries in (\d+) pages", agent.log())]
        self.assertTrue(pages and max(pages) >= 5, pages)
        batches = [int(n) for n in re.findall(r"minted (\d+) workload SVID", agent.log())]
        self.assertLessEqual(max(batches), 10, batches)
        self.assertGreaterEqual(len(batches), 1000, batches)

        # A change among the 10,000 still reaches the workload.
        server.delete_entry(first_id)
        self.wait_for_svids(client, mine[1:], timeout=120)

    def test_workload_receives_valid_x509_svid(self):
        server, agent, _, agent_id = self.setup_with_token()
        server.create_entry(agent_id, spiffe_id("workload"), [UID_SELECTOR])
        resp = self.wait_for_svids(self.client(agent), [spiffe_id("workload")])
        self.check_x509_svid(resp.svids[0], spiffe_id("workload"))

        # The bundle stream agrees with the SVID's bundle.
        bundles = self.client(agent).fetch_x509_bundles()
        self.assertIn(TD_ID, bundles.bundles)
        self.assertEqual(bundles.bundles[TD_ID], resp.svids[0].bundle)

        # And the CLI writes the same identity to disk in SPIRE's file layout.
        out_dir = self.d.path("fetched")
        os.makedirs(out_dir)
        agent.cli("api", "fetch", "x509", "-write", out_dir, check=True)
        for name in ("svid.0.pem", "svid.0.key", "bundle.0.pem"):
            self.assertTrue(os.path.exists(os.path.join(out_dir, name)), name)
        self.assertEqual(os.stat(os.path.join(out_dir, "svid.0.key")).st_mode & 0o777, 0o600)
        check = subprocess.run(["openssl", "verify", "-CAfile",
                                os.path.join(out_dir, "bundle.0.pem"),
                                os.path.join(out_dir, "svid.0.pem")],
                               capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_jwt_svid_validates_at_agent_and_against_jwks(self):
        server, agent, _, agent_id = self.setup_with_token()
        server.create_entry(agent_id, spiffe_id("jwt-workload"), [UID_SELECTOR])
        client = self.client(agent)
        self.wait_for_svids(client, [spiffe_id("jwt-workload")])

        resp = wait_for(lambda: client.fetch_jwt(["audience-a", "audience-b"]),
                        what="a JWT-SVID")
        self.assertEqual(len(resp.svids), 1)
        self.assertEqual(resp.svids[0].spiffe_id, spiffe_id("jwt-workload"))
        token = resp.svids[0].svid

        validated = client.validate_jwt("audience-a", token)
        self.assertEqual(validated.spiffe_id, spiffe_id("jwt-workload"))
        claims = json.loads(_struct_to_json(validated.claims))
        self.assertIsInstance(claims["aud"], list)
        self.assertIn("audience-a", claims["aud"])
        self.assertEqual(claims["sub"], spiffe_id("jwt-workload"))

        with self.assertRaises(grpc.RpcError) as wrong_aud:
            client.validate_jwt("someone-else", token)
        self.assertEqual(wrong_aud.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

        jwt_bundles = client.fetch_jwt_bundles()
        self.assertIn(TD_ID, jwt_bundles.bundles)
        jwks = json.loads(jwt_bundles.bundles[TD_ID])
        for key in jwks["keys"]:
            self.assertIn("kid", key)
            self.assertNotIn("use", key)
        header, payload = wl.verify_jwt_with_jwks(token, jwks)
        self.assertEqual(header["alg"], "ES256")
        self.assertEqual(payload["sub"], spiffe_id("jwt-workload"))
        aud = payload["aud"] if isinstance(payload["aud"], list) else [payload["aud"]]
        self.assertEqual(sorted(aud), ["audience-a", "audience-b"])
        self.assertGreater(payload["exp"], time.time())
        self.assertIn("iat", payload)

    def test_missing_security_header_is_invalid_argument(self):
        server, agent, _, agent_id = self.setup_with_token()
        server.create_entry(agent_id, spiffe_id("workload"), [UID_SELECTOR])
        client = self.client(agent)
        self.wait_for_svids(client, [spiffe_id("workload")])
        with self.assertRaises(grpc.RpcError) as err:
            client.fetch_x509(header=False)
        self.assertEqual(err.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_wrong_security_header_value_is_invalid_argument(self):
        server, agent, _, agent_id = self.setup_with_token()
        server.create_entry(agent_id, spiffe_id("workload"), [UID_SELECTOR])
        client = self.client(agent)
        self.wait_for_svids(client, [spiffe_id("workload")])
        stream = client.stub.FetchX509SVID(client.pb2.X509SVIDRequest(), timeout=30,
                                           metadata=(("workload.spiffe.io", "false"),))
        with self.assertRaises(grpc.RpcError) as err:
            next(stream)
        self.assertEqual(err.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_jwt_request_without_audience_is_invalid_argument(self):
        server, agent, _, agent_id = self.setup_with_token()
        server.create_entry(agent_id, spiffe_id("workload"), [UID_SELECTOR])
        client = self.client(agent)
        self.wait_for_svids(client, [spiffe_id("workload")])
        with self.assertRaises(grpc.RpcError) as no_audience:
            client.fetch_jwt([])
        self.assertEqual(no_audience.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_validating_a_malformed_token_is_invalid_argument(self):
        server, agent, _, agent_id = self.setup_with_token()
        server.create_entry(agent_id, spiffe_id("workload"), [UID_SELECTOR])
        client = self.client(agent)
        self.wait_for_svids(client, [spiffe_id("workload")])
        with self.assertRaises(grpc.RpcError) as garbage:
            client.validate_jwt("audience-a", "not.a.jwt")
        self.assertEqual(garbage.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_unregistered_caller_is_permission_denied(self):
        if os.getuid() != 0:
            self.fail("this test runs a client as user 'nobody' and needs root (uid %d)" %
                      os.getuid())
        server, agent, _, agent_id = self.setup_with_token()
        server.create_entry(agent_id, spiffe_id("workload"), [UID_SELECTOR])
        self.wait_for_svids(self.client(agent), [spiffe_id("workload")])

        _, _, proto_out = wl.compile_proto()
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workload_client.py")
        out = subprocess.run(
            ["runuser", "-u", "nobody", "--", sys.executable, script, "--socket",
             agent.socket_path, "--proto-out", proto_out, "fetch-x509"],
            capture_output=True, text=True, timeout=120,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1"})
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertEqual(out.stdout.strip().splitlines()[0], "PERMISSION_DENIED",
                         out.stdout + out.stderr)

    def test_deleting_entry_ends_stream_with_permission_denied(self):
        server, agent, _, agent_id = self.setup_with_token()
        entry_id = server.create_entry(agent_id, spiffe_id("workload"), [UID_SELECTOR])
        client = self.client(agent)
        self.wait_for_svids(client, [spiffe_id("workload")])
        stream = client.x509_stream(timeout=harness.DEFAULT_TIMEOUT)
        self.addCleanup(stream.cancel)
        first = next(stream)
        self.assertEqual(svid_ids(first), [spiffe_id("workload")])
        server.delete_entry(entry_id)
        with self.assertRaises(grpc.RpcError) as err:
            for msg in stream:
                # Full-state messages may still arrive; none may carry the deleted identity
                # after it is gone, and the stream must end.
                self.assertIn(svid_ids(msg), ([spiffe_id("workload")], []))
        self.assertEqual(err.exception.code(), grpc.StatusCode.PERMISSION_DENIED,
                         err.exception.details())

    def test_rotation_is_pushed_on_the_stream_before_expiry(self):
        server, agent, _, agent_id = self.setup_with_token()
        server.create_entry(agent_id, spiffe_id("short"), [UID_SELECTOR], "-x509SVIDTTL", "20")
        client = self.client(agent)
        self.wait_for_svids(client, [spiffe_id("short")])
        stream = client.x509_stream(timeout=harness.DEFAULT_TIMEOUT)
        self.addCleanup(stream.cancel)
        first = next(stream)
        leaf = wl.split_der_certs(first.svids[0].x509_svid)[0]
        self.assertLessEqual(leaf.not_valid_after - leaf.not_valid_before,
                             datetime.timedelta(seconds=31))
        new_leaf = None
        for msg in stream:
            if not msg.svids:
                continue
            new_leaf = wl.split_der_certs(msg.svids[0].x509_svid)[0]
            if new_leaf.serial_number != leaf.serial_number:
                break
        else:
            self.fail("the stream ended without a rotated SVID")
        now = datetime.datetime.utcnow()
        # Arrived well before the old SVID expired, and the new one lives longer.
        self.assertLess(now, leaf.not_valid_after - datetime.timedelta(seconds=3))
        self.assertGreater(new_leaf.not_valid_after, leaf.not_valid_after)
        self.check_x509_svid(msg.svids[0], spiffe_id("short"))

    def test_agent_serves_while_server_is_down_and_catches_up(self):
        server, agent, _, agent_id = self.setup_with_token()
        server.create_entry(agent_id, spiffe_id("first"), [UID_SELECTOR])
        client = self.client(agent)
        self.wait_for_svids(client, [spiffe_id("first")])

        server.kill()
        resp = client.fetch_x509()
        self.assertEqual(svid_ids(resp), [spiffe_id("first")])
        self.check_x509_svid(resp.svids[0], spiffe_id("first"))
        self.assertTrue(agent.process.running())

        server.start()
        server.create_entry(agent_id, spiffe_id("second"), [UID_SELECTOR])
        resp = self.wait_for_svids(client, [spiffe_id("first"), spiffe_id("second")],
                                   timeout=2 * harness.DEFAULT_TIMEOUT)
        for svid in resp.svids:
            self.check_x509_svid(svid, svid.spiffe_id)

    def test_agent_restart_keeps_its_identity(self):
        server, agent, _, agent_id = self.setup_with_token()
        server.create_entry(agent_id, spiffe_id("workload"), [UID_SELECTOR])
        self.wait_for_svids(self.client(agent), [spiffe_id("workload")])
        self.assertEqual(agent.stop(), 0, agent.log()[-3000:])

        # No token this time: the consumed one would be refused, so serving again proves the
        # agent came back as the same agent ID from its data_dir.
        agent.start()
        resp = self.wait_for_svids(self.client(agent), [spiffe_id("workload")])
        self.check_x509_svid(resp.svids[0], spiffe_id("workload"))
        ids = [agent_field(a, "spiffe_id", "id") for a in server.agents()]
        self.assertEqual(ids, [agent_id])
        # It still syncs with the server: a new entry reaches it.
        server.create_entry(agent_id, spiffe_id("after-restart"), [UID_SELECTOR])
        self.wait_for_svids(self.client(agent),
                            [spiffe_id("workload"), spiffe_id("after-restart")])

    def test_running_agent_drops_malloc_thread_caches_and_keeps_its_pid(self):
        server, agent, _, agent_id = self.setup_with_token()
        server.create_entry(agent_id, spiffe_id("workload"), [UID_SELECTOR])
        self.wait_for_svids(self.client(agent), [spiffe_id("workload")])
        # Same process the test started (exec keeps the pid), now with the tunable set.
        pid = agent.process.pid
        with open("/proc/%d/environ" % pid, "rb") as f:
            environ = f.read().split(b"\0")
        self.assertIn(b"GLIBC_TUNABLES=glibc.malloc.tcache_count=0", environ)
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().rstrip(b"\0").split(b"\0")
        self.assertEqual(argv[1:3], [b"run", b"-config"])
        self.assertEqual(os.path.realpath("/proc/%d/exe" % pid),
                         os.path.realpath(agent.process.args[0]))

    def test_banned_agent_is_refused(self):
        server, agent, _, agent_id = self.setup_with_token()
        server.create_entry(agent_id, spiffe_id("workload"), [UID_SELECTOR])
        client = self.client(agent)
        self.wait_for_svids(client, [spiffe_id("workload")])

        agent_log_offset = agent.process.log_size()
        server_log_offset = server.process.log_size()
        server.cli("agent", "ban", "-spiffeID", agent_id, check=True)
        self.assertTrue(agent_field(server.agent(agent_id), "banned"))
        server.create_entry(agent_id, spiffe_id("after-ban"), [UID_SELECTOR])

        # Every agent RPC after the ban is refused; the agent syncs at least every 5 s (and at
        # once on a change notice), so a refusal shows in its log or the server's.
        def refused():
            return (AGENT_REFUSED_RE.search(agent.process.log_since(agent_log_offset)) or
                    SERVER_REFUSED_RE.search(server.process.log_since(server_log_offset)))
        wait_for(refused, what="a PERMISSION_DENIED after the ban")
        # The ban was written before the entry, so no sync can have delivered the entry.
        if agent.process.running():
            try:
                ids = svid_ids(client.fetch_x509(timeout=10))
                self.assertNotIn(spiffe_id("after-ban"), ids)
            except grpc.RpcError as e:
                self.assertNotEqual(e.code(), grpc.StatusCode.OK)


def _struct_to_json(struct):
    from google.protobuf import json_format
    return json_format.MessageToJson(struct)


if __name__ == "__main__":
    unittest.main()
