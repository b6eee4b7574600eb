# Two trust domains on one machine federating through their bundle endpoints.
"""Federation between two trust domains.

td-a.test serves its bundle with the https_spiffe profile (its server SVID); td-b.test serves
its bundle with https_web (a certificate from a Web CA made in the test, trusted by td-a's
server through SSL_CERT_FILE). td-a federates with td-b from its configuration; td-b federates
with td-a through `federation create`, bootstrapped with td-a's bundle. A workload in each trust
domain then verifies the other's X509-SVID with openssl and the other's JWT-SVID at its own
agent; a rotation in one reaches the other; endpoints serving garbage or another trust
domain's bundle leave the last good bundle in place.
"""

import datetime
import http.server
import ipaddress
import json
import os
import ssl
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402
import workload_client as wl  # noqa: E402
from harness import free_port, uid_selector, wait_for  # noqa: E402
from test_single_domain import DeploymentTest, self_signed_ca  # noqa: E402

TD_A = "td-a.test"
TD_B = "td-b.test"
LONG_TIMEOUT = 120


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def web_server_cert(ca, ca_key):
    """A TLS server certificate for localhost / 127.0.0.1 issued by the test's Web CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


class StaticHttpsServer:
    """An HTTPS server on loopback answering every GET with one body (changeable)."""

    def __init__(self, cert_path, key_path, body):
        self.body = body
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                data = outer.body.encode() if isinstance(outer.body, str) else outer.body
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_path, key_path)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def x509_bundle_roots(der_blob):
    return wl.split_der_certs(der_blob)


class FederationTest(DeploymentTest):

    def setUp(self):
        super().setUp()
        # The Web PKI of td-b's bundle endpoint, trusted by td-a's server.
        self.web_ca, self.web_ca_key = self_signed_ca("Test Web CA")
        web_cert, web_key = web_server_cert(self.web_ca, self.web_ca_key)
        self.web_ca_path = self.d.path("web-ca.pem")
        self.web_cert_path = self.d.path("web-cert.pem")
        self.web_key_path = self.d.path("web-key.pem")
        for path, data in ((self.web_ca_path, pem(self.web_ca)),
                           (self.web_cert_path, pem(web_cert)),
                           (self.web_key_path, key_pem(web_key))):
            with open(path, "wb") as f:
                f.write(data)
        os.chmod(self.web_key_path, 0o600)
        self.port_a = free_port()
        self.port_b = free_port()

    def start_domains(self):
        config_a = (
            "  federation {\n"
            "    bundle_endpoint {\n"
            "      address = \"127.0.0.1\"\n"
            "      port = %d\n"
            "      refresh_hint = \"1s\"\n"
            "    }\n"
            "    federates_with \"%s\" {\n"
            "      bundle_endpoint_url = \"https://localhost:%d\"\n"
            "      bundle_endpoint_profile \"https_web\" {}\n"
            "    }\n"
            "  }\n") % (self.port_a, TD_B, self.port_b)
        config_b = (
            "  federation {\n"
            "    bundle_endpoint {\n"
            "      address = \"127.0.0.1\"\n"
            "      port = %d\n"
            "      refresh_hint = \"1s\"\n"
            "      profile \"https_web\" {\n"
            "        serving_cert_file {\n"
            "          cert_file_path = \"%s\"\n"
            "          key_file_path = \"%s\"\n"
            "        }\n"
            "      }\n"
            "    }\n"
            "  }\n") % (self.port_b, self.web_cert_path, self.web_key_path)
        self.server_a = self.d.server("server-a", trust_domain=TD_A, extra_server_config=config_a,
                                      env={"SSL_CERT_FILE": self.web_ca_path})
        self.server_b = self.d.server("server-b", trust_domain=TD_B, extra_server_config=config_b)
        self.agent_a = self.d.attested_agent(self.server_a, name="agent-a")
        self.agent_b = self.d.attested_agent(self.server_b, name="agent-b")

    def federate_b_with_a(self):
        """td-b fetches td-a's bundle over https_spiffe, bootstrapped with td-a's bundle."""
        bootstrap = self.d.path("td-a-bootstrap.json")
        with open(bootstrap, "w") as f:
            f.write(self.server_a.cli("bundle", "show", "-format", "spiffe", check=True).stdout)
        out = self.server_b.cli(
            "federation", "create", "-trustDomain", TD_A,
            "-bundleEndpointURL", "https://127.0.0.1:%d" % self.port_a,
            "-bundleEndpointProfile", "https_spiffe",
            "-endpointSpiffeID", "spiffe://%s/spire/server" % TD_A,
            "-trustDomainBundlePath", bootstrap, "-trustDomainBundleFormat", "spiffe",
            check=True).stdout
        self.assertIn("Trust domain              : %s" % TD_A, out)
        self.assertIn("Bundle endpoint profile   : https_spiffe", out)

    def federated_bundle(self, agent, trust_domain, timeout=LONG_TIMEOUT):
        """Waits until the agent's FetchX509SVID carries `trust_domain`'s bundle; its roots."""
        key = "spiffe://" + trust_domain
        found = {}

        def delivered():
            with wl.WorkloadClient(agent.socket_path) as c:
                resp = c.fetch_x509()
            if key in resp.federated_bundles:
                found["roots"] = x509_bundle_roots(resp.federated_bundles[key])
                found["response"] = resp
                return True
            return False
        wait_for(delivered, timeout, what="%s to deliver the bundle of %s" % (agent.name,
                                                                               trust_domain))
        return found["roots"], found["response"]

    def stored_bundle(self, server, trust_domain):
        out = server.cli("bundle", "list", "-id", trust_domain, "-format", "spiffe",
                         check=True).stdout
        return json.loads(out)

    def test_two_trust_domains_verify_each_others_svids_and_follow_rotations(self):
        self.start_domains()
        self.federate_b_with_a()
        _, id_a = self.server_a.register_workload(self.agent_a, "/app-a", "-federatesWith", TD_B)
        _, id_b = self.server_b.register_workload(self.agent_b, "/app-b", "-federatesWith", TD_A)

        # Each side's workload receives the other trust domain's bundle...
        b_roots_at_a, resp_a = self.federated_bundle(self.agent_a, TD_B)
        a_roots_at_b, resp_b = self.federated_bundle(self.agent_b, TD_A)
        svid_a = next(s for s in resp_a.svids if s.spiffe_id == id_a)
        svid_b = next(s for s in resp_b.svids if s.spiffe_id == id_b)
        # ...and verifies the other's X509-SVID with it.
        chain_a = wl.split_der_certs(svid_a.x509_svid)
        chain_b = wl.split_der_certs(svid_b.x509_svid)
        for name, chain, roots in (("a-at-b", chain_a, a_roots_at_b),
                                   ("b-at-a", chain_b, b_roots_at_a)):
            result = wl.openssl_verify(self.d.path("verify-" + name), chain, roots)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            self.assertIn("leaf.pem: OK", result.stdout)
        # Each trust domain's own roots do not verify the other's SVID.
        own_a = x509_bundle_roots(svid_a.bundle)
        result = wl.openssl_verify(self.d.path("verify-cross"), chain_b, own_a)
        self.assertNotEqual(result.returncode, 0)

        # JWT-SVIDs: minted in one trust domain, accepted by the other's agent.
        with wl.WorkloadClient(self.agent_a.socket_path) as c:
            token_a = c.fetch_jwt(["svc-b"]).svids[0].svid
        with wl.WorkloadClient(self.agent_b.socket_path) as c:
            token_b = c.fetch_jwt(["svc-a"]).svids[0].svid
            checked = c.validate_jwt("svc-b", token_a)
            self.assertEqual(checked.spiffe_id, id_a)
            jwt_bundles = c.fetch_jwt_bundles()
            self.assertIn("spiffe://" + TD_A, jwt_bundles.bundles)
            x509_bundles = c.fetch_x509_bundles()
            self.assertIn("spiffe://" + TD_A, x509_bundles.bundles)
            self.assertIn("spiffe://" + TD_B, x509_bundles.bundles)
        with wl.WorkloadClient(self.agent_a.socket_path) as c:
            self.assertEqual(c.validate_jwt("svc-a", token_b).spiffe_id, id_b)

        # The relationship as both sides' CLI shows it.
        show = self.server_b.cli("federation", "show", "-trustDomain", TD_A, check=True).stdout
        self.assertIn("Endpoint SPIFFE ID        : spiffe://%s/spire/server" % TD_A, show)
        self.assertIn("Last refreshed", show)
        listed = self.server_a.cli("federation", "list", "-output", "json", check=True).json()
        self.assertEqual([r["trust_domain"] for r in listed["relationships"]], [TD_B])
        self.assertEqual(listed["relationships"][0]["bundle_endpoint_profile"], "HTTPS_WEB")

        # A JWT authority prepared in td-a reaches td-b's agent through the bundle endpoint.
        prepared = self.server_a.localauthority("jwt", "prepare")
        kid = prepared["authority_id"]

        def new_key_at_b():
            with wl.WorkloadClient(self.agent_b.socket_path) as c:
                jwks = json.loads(c.fetch_jwt_bundles().bundles["spiffe://" + TD_A])
            return any(k.get("kid") == kid for k in jwks["keys"])
        wait_for(new_key_at_b, LONG_TIMEOUT, what="td-a's new JWT key to reach td-b's agent")

        # An X.509 authority prepared in td-b reaches td-a's agent.
        before = set(c.fingerprint(hashes.SHA256()) for c in b_roots_at_a)
        self.server_b.localauthority("x509", "prepare")

        def new_ca_at_a():
            roots, _ = self.federated_bundle(self.agent_a, TD_B)
            return len(set(c.fingerprint(hashes.SHA256()) for c in roots) - before) == 1
        wait_for(new_ca_at_a, LONG_TIMEOUT, what="td-b's new CA to reach td-a's agent")

    def test_bad_endpoints_leave_the_last_good_bundle_in_place(self):
        self.start_domains()
        wait_for(lambda: self.server_a.cli("bundle", "list", "-id", TD_B).ok, LONG_TIMEOUT,
                 what="td-a to fetch td-b's bundle")
        good = self.stored_bundle(self.server_a, TD_B)

        # An endpoint serving something that is not a bundle.
        garbage = StaticHttpsServer(self.web_cert_path, self.web_key_path, "not a bundle {")
        self.addCleanup(garbage.close)
        self.server_a.cli("federation", "update", "-trustDomain", TD_B,
                          "-bundleEndpointURL", "https://localhost:%d" % garbage.port,
                          "-bundleEndpointProfile", "https_web", check=True)
        refresh = self.server_a.cli("federation", "refresh", "-id", TD_B)
        self.assertNotEqual(refresh.returncode, 0)
        self.assertIn("did not serve a valid SPIFFE bundle", refresh.stderr)
        self.assertEqual(self.stored_bundle(self.server_a, TD_B), good)

        # An endpoint serving another trust domain's bundle (td-a's own) as td-b's.
        garbage.body = self.server_a.cli("bundle", "show", "-format", "spiffe", check=True).stdout
        refresh = self.server_a.cli("federation", "refresh", "-id", TD_B)
        self.assertNotEqual(refresh.returncode, 0)
        self.assertIn("holds an X.509 authority of trust domain %s" % TD_A, refresh.stderr)
        self.assertEqual(self.stored_bundle(self.server_a, TD_B), good)
        show = self.server_a.cli("federation", "show", "-trustDomain", TD_B, check=True).stdout
        self.assertIn("Last refresh error", show)

        # A TLS peer the profile does not accept: td-a's https_spiffe endpoint presents td-a's
        # server SVID, which is not the endpoint ID td-b's relationship expects.
        self.federate_b_with_a()
        wait_for(lambda: self.server_b.cli("federation", "refresh", "-id", TD_A).ok,
                 LONG_TIMEOUT, what="td-b to fetch td-a's bundle")
        self.server_b.cli("federation", "update", "-trustDomain", TD_A,
                          "-bundleEndpointURL", "https://127.0.0.1:%d" % self.port_a,
                          "-bundleEndpointProfile", "https_spiffe",
                          "-endpointSpiffeID", "spiffe://%s/someone-else" % TD_A, check=True)
        refresh = self.server_b.cli("federation", "refresh", "-id", TD_A)
        self.assertNotEqual(refresh.returncode, 0)
        self.assertIn("not spiffe://%s/someone-else" % TD_A, refresh.stderr)

        # The agent of td-a still delivers the good bundle.
        self.server_a.register_workload(self.agent_a, "/app-a", "-federatesWith", TD_B)
        roots, _ = self.federated_bundle(self.agent_a, TD_B)
        good_roots = sorted(k["x5c"][0] for k in good["keys"] if k.get("use") == "x509-svid")
        import base64
        self.assertEqual(sorted(base64.b64encode(r.public_bytes(serialization.Encoding.DER))
                                .decode() for r in roots), good_roots)

    def test_a_nested_tier_delivers_the_federated_bundles_of_the_tier_above(self):
        self.start_domains()
        # A regional server of td-a, next to an agent of td-a's root tier.
        host = self.d.attested_agent(self.server_a, name="region-host")
        region = self.d.downstream_server(self.server_a, host, "region")
        region_agent = self.d.attested_agent(region, name="region-agent")
        _, sid = region.register_workload(region_agent, "/regional-app", "-federatesWith", TD_B)
        # td-b's bundle, fetched by the root, reaches the region's workload.
        roots, resp = self.federated_bundle(region_agent, TD_B)
        self.server_b.register_workload(self.agent_b, "/app-b")
        with wl.WorkloadClient(self.agent_b.socket_path) as c:
            svid_b = c.fetch_x509().svids[0]
        result = wl.openssl_verify(self.d.path("verify-region"),
                                   wl.split_der_certs(svid_b.x509_svid), roots)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        # The region stores it like a bundle of its own relationships...
        self.assertIn("spiffe://%s" % TD_B,
                      region.cli("bundle", "list", check=True).stdout)
        # ...and follows a rotation in td-b.
        before = set(c.fingerprint(hashes.SHA256()) for c in roots)
        self.server_b.localauthority("x509", "prepare")

        def rotated_at_region():
            now, _ = self.federated_bundle(region_agent, TD_B)
            return len(set(c.fingerprint(hashes.SHA256()) for c in now) - before) == 1
        wait_for(rotated_at_region, LONG_TIMEOUT, what="td-b's new CA to reach the region")
        # Deleting the relationship and the bundle at the root removes it from the region once
        # no entry there federates with td-b.
        self.server_a.cli("federation", "delete", "-id", TD_B, check=True)
        region.cli("entry", "delete", "-entryID",
                   region.cli("entry", "show", "-spiffeID", sid, "-output", "json",
                              check=True).json()["entries"][0]["id"], check=True)
        self.server_a.cli("bundle", "delete", "-id", TD_B, check=True)
        wait_for(lambda: not region.cli("bundle", "list", "-id", TD_B).ok, LONG_TIMEOUT,
                 what="the region to drop td-b's bundle")


if __name__ == "__main__":
    unittest.main()
