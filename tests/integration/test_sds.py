# Envoy SDS v3 on the agent's socket, read by a client built from Envoy's protos in Python.
"""Envoy SDS.

One trust domain with a federated one. A client on the agent's Workload API socket (no
security header, attested from the kernel like any workload) asks for SPIRE's resource names
and checks what Envoy reads: the certificate chain and its private key, the trusted CA, the
SPIFFE validator configuration per trust domain; ACKs and NACKs; a rotation pushed on the
stream once, and nothing pushed that did not change.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
import sds_client  # noqa: E402
import workload_client as wl  # noqa: E402
from harness import uid_selector, wait_for  # noqa: E402
from test_single_domain import DeploymentTest  # noqa: E402

TD = "example.org"
PARTNER = "partner.test"
LONG_TIMEOUT = 120


def certs(pem_bytes):
    """Every CERTIFICATE block of a PEM document, in order."""
    marker = b"-----BEGIN CERTIFICATE-----"
    blocks = [marker + part for part in pem_bytes.split(marker)[1:]]
    if not blocks:
        raise AssertionError("no certificate in %r" % pem_bytes[:80])
    return [x509.load_pem_x509_certificate(b) for b in blocks]


def serial(secret):
    return certs(secret.tls_certificate.certificate_chain.inline_bytes)[0].serial_number


class SdsTest(DeploymentTest):

    def setUp(self):
        super().setUp()
        self.server = self.d.server("server")
        partner = self.d.server("partner", trust_domain=PARTNER)
        self.partner_pem = partner.bundle_pem()
        path = self.d.path("partner.pem")
        with open(path, "w") as f:
            f.write(self.partner_pem)
        self.server.cli("bundle", "set", "-id", "spiffe://" + PARTNER, "-path", path, check=True)
        self.agent = self.d.attested_agent(self.server)
        self.front_entry, self.front = self.server.register_workload(
            self.agent, "/front", "-federatesWith", PARTNER)
        self.back_entry, self.back = self.server.register_workload(self.agent, "/back")
        wait_for(self._both_issued, LONG_TIMEOUT, what="both SVIDs at the agent")

    def _both_issued(self):
        try:
            with wl.WorkloadClient(self.agent.socket_path) as c:
                return len(c.fetch_x509().svids) == 2
        except grpc.RpcError:
            return False

    def bump(self, entry_id, sid, hint, *extra):
        """A new revision of the entry: the agent mints a new SVID for it."""
        self.server.cli("entry", "update", "-entryID", entry_id, "-parentID",
                        self.agent.spiffe_id, "-spiffeID", sid, "-selector", uid_selector(),
                        "-hint", hint, *extra, check=True)

    def test_secrets_are_what_envoy_reads(self):
        with sds_client.SdsClient(self.agent.socket_path) as c:
            stream = c.stream()
            self.addCleanup(stream.close)
            stream.send(c.request(["default", self.front, "ROOTCA", "ALL",
                                   "spiffe://" + PARTNER, "spiffe://unknown.test"]))
            resp = stream.next()
            self.assertTrue(resp.version_info)
            self.assertTrue(resp.nonce)
            self.assertEqual(resp.type_url, sds_client.SECRET_TYPE)
            secrets = c.secrets(resp)
            self.assertEqual(set(secrets), {"default", self.front, "ROOTCA", "ALL",
                                            "spiffe://" + PARTNER})

            # A TLS certificate: leaf first, its key, chaining to the trusted CA.
            own_roots = certs(secrets["ROOTCA"].validation_context.trusted_ca.inline_bytes)
            self.assertEqual(
                sorted(r.fingerprint(hashes.SHA256()) for r in own_roots),
                sorted(r.fingerprint(hashes.SHA256())
                       for r in certs(self.server.bundle_pem().encode())))
            for name in ("default", self.front):
                tc = secrets[name].tls_certificate
                chain = certs(tc.certificate_chain.inline_bytes)
                key = serialization.load_pem_private_key(tc.private_key.inline_bytes, None)
                spki = (serialization.Encoding.DER,
                        serialization.PublicFormat.SubjectPublicKeyInfo)
                self.assertEqual(key.public_key().public_bytes(*spki),
                                 chain[0].public_key().public_bytes(*spki))
                result = wl.openssl_verify(self.d.path("verify-" + name.replace("/", "_")),
                                           chain, own_roots)
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            self.assertIn(wl.uri_sans(certs(
                secrets[self.front].tls_certificate.certificate_chain.inline_bytes)[0])[0],
                [self.front])

            # The federated trust domain's own validation context, and ALL with both.
            self.assertEqual(
                secrets["spiffe://" + PARTNER].validation_context.trusted_ca.inline_bytes.decode(),
                self.partner_pem)
            validator = c.spiffe_validator(secrets["ALL"])
            self.assertEqual(set(validator), {TD, PARTNER})
            self.assertEqual(validator[PARTNER].decode(), self.partner_pem)

            # FetchSecrets answers the same way, once.
            fetched = c.secrets(c.fetch(["ROOTCA", self.back]))
            self.assertEqual(set(fetched), {"ROOTCA", self.back})
            # Incremental SDS is refused with the reason.
            with self.assertRaises(grpc.RpcError) as e:
                c.delta()
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
            self.assertIn("api_type GRPC", e.exception.details())

    def test_rotation_is_pushed_once_and_acks_and_nacks_are_honoured(self):
        names = ["default", self.back, "ROOTCA"]
        with sds_client.SdsClient(self.agent.socket_path) as c:
            stream = c.stream()
            self.addCleanup(stream.close)
            stream.send(c.request(names))
            first = stream.next()
            before = serial(c.secrets(first)[self.back])
            stream.send(c.request(names, version=first.version_info, nonce=first.nonce))

            # A new SVID for /back: one push, with a new version and the new certificate. A
            # second copy of the old state would show here as the same version.
            self.bump(self.back_entry, self.back, "rotated-1")
            second = stream.next(timeout=LONG_TIMEOUT)
            self.assertNotEqual(second.version_info, first.version_info)
            self.assertNotEqual(second.nonce, first.nonce)
            self.assertNotEqual(serial(c.secrets(second)[self.back]), before)

            # A NACK keeps the stream; the next change is still pushed.
            stream.send(c.request(names, version=first.version_info, nonce=second.nonce,
                                  error="rejected by the test"))
            self.bump(self.back_entry, self.back, "rotated-2")
            third = stream.next(timeout=LONG_TIMEOUT)
            self.assertNotIn(third.version_info, (first.version_info, second.version_info))
            stream.send(c.request(names, version=third.version_info, nonce=third.nonce))

            # A request answering an older response is stale and ignored; a change of names is
            # answered at once with exactly the names asked for.
            stream.send(c.request([self.front], version=third.version_info, nonce=first.nonce))
            stream.send(c.request([self.front], version=third.version_info, nonce=third.nonce))
            fourth = stream.next()
            self.assertEqual(set(c.secrets(fourth)), {self.front})
            self.assertIn("rejected by the test", self.agent.log())

            # The caller losing every identity ends the stream.
            self.server.delete_entry(self.front_entry)
            self.server.delete_entry(self.back_entry)
            with self.assertRaises(grpc.RpcError) as e:
                while True:
                    stream.next(timeout=LONG_TIMEOUT)
            self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)


if __name__ == "__main__":
    unittest.main()
