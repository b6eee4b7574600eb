# OIDC discovery served by a server of one branch of a nested tree, used by python-jwt to
# verify a JWT-SVID minted in another branch.
"""OIDC discovery.

A root tier with two regions. A workload under region-1 fetches a JWT-SVID; region-2 serves
OIDC discovery. A relying party that knows nothing of SPIFFE (python-jwt) reads the discovery
document and the keys over HTTP and verifies the token; a JWT key tainted at the root leaves
region-2's keys.
"""

import json
import os
import sys
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jwt  # noqa: E402
import workload_client as wl  # noqa: E402
from harness import free_port, wait_for  # noqa: E402
from test_single_domain import DeploymentTest  # noqa: E402

ISSUER = "https://oidc.example.test"
LONG_TIMEOUT = 120


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        if r.status != 200:
            raise AssertionError("%s answered %d" % (url, r.status))
        return json.loads(r.read())


def kids(jwks):
    return [k["kid"] for k in jwks["keys"]]


class OidcDiscoveryTest(DeploymentTest):

    def test_another_branch_serves_keys_that_verify_a_jwt_svid(self):
        issuer_cfg = '  jwt_issuer = "%s"\n' % ISSUER
        port = free_port()
        oidc_cfg = '\noidc_discovery {\n  address = "127.0.0.1"\n  port = %d\n}\n' % port
        root = self.d.server("root", extra_server_config=issuer_cfg)
        host1 = self.d.attested_agent(root, name="host1")
        host2 = self.d.attested_agent(root, name="host2")
        region1 = self.d.downstream_server(root, host1, "region1", extra_server_config=issuer_cfg)
        region2 = self.d.downstream_server(root, host2, "region2", extra_server_config=issuer_cfg,
                                           extra_config=oidc_cfg)
        agent1 = self.d.attested_agent(region1, name="agent1")
        _, sid = region1.register_workload(agent1, "/api-client")

        token = {}

        def minted():
            try:
                with wl.WorkloadClient(agent1.socket_path) as c:
                    token["t"] = c.fetch_jwt(["api.example.test"]).svids[0].svid
                return True
            except Exception:  # noqa: BLE001 - not synced yet
                return False
        wait_for(minted, LONG_TIMEOUT, what="a JWT-SVID under region1")
        header = jwt.get_unverified_header(token["t"])

        base = "http://127.0.0.1:%d" % port
        doc = get_json(base + "/.well-known/openid-configuration")
        self.assertEqual(doc["issuer"], ISSUER)
        self.assertEqual(doc["jwks_uri"], base + "/keys")
        self.assertEqual(doc["subject_types_supported"], ["public"])
        self.assertIn(header["alg"], doc["id_token_signing_alg_values_supported"])
        # region1 published its key through the root before signing; region2 has it from the
        # root's bundle.
        wait_for(lambda: header["kid"] in kids(get_json(doc["jwks_uri"])), LONG_TIMEOUT,
                 what="region1's JWT key in region2's /keys")

        signing_key = jwt.PyJWKClient(doc["jwks_uri"]).get_signing_key_from_jwt(token["t"])
        claims = jwt.decode(token["t"], signing_key.key,
                            algorithms=doc["id_token_signing_alg_values_supported"],
                            audience="api.example.test", issuer=ISSUER)
        self.assertEqual(claims["sub"], sid)
        with self.assertRaises(jwt.InvalidAudienceError):
            jwt.decode(token["t"], signing_key.key, algorithms=[header["alg"]],
                       audience="another-api", issuer=ISSUER)

        # A root key replaced and tainted leaves every branch's /keys.
        old_kid = root.authorities("jwt")["active"]["authority_id"]
        self.assertIn(old_kid, kids(get_json(base + "/keys")))
        new_kid = root.localauthority("jwt", "prepare")["authority_id"]
        wait_for(lambda: new_kid in kids(get_json(base + "/keys")), LONG_TIMEOUT,
                 what="the root's prepared key in region2's /keys")
        root.localauthority("jwt", "activate", new_kid)
        root.localauthority("jwt", "taint", old_kid)
        wait_for(lambda: old_kid not in kids(get_json(base + "/keys")), LONG_TIMEOUT,
                 what="the tainted root key gone from region2's /keys")
        self.assertIn(header["kid"], kids(get_json(base + "/keys")))


if __name__ == "__main__":
    unittest.main()
