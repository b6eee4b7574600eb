# Platform attestation end to end: real server and agent processes attest against loopback
# stand-ins of the Kubernetes API, the kubelet, Docker, AWS IMDSv2, the GCP metadata server and
# Azure IMDS; workloads placed in real cgroups get SVIDs for k8s: and docker: selectors.
"""Kubernetes, cloud and container attestation.

The workload side needs a cgroup the test can create and move a process into: the tests make
a pod's (or container's) cgroup under the pids hierarchy, so /proc/<pid>/cgroup of the
workload reads exactly as it does on a Kubernetes node or Docker host.
"""

import json
import os
import subprocess
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import platform_fakes as fakes  # noqa: E402
from harness import agent_field, hcl_string, spiffe_id, wait_for  # noqa: E402
from test_single_domain import DeploymentTest  # noqa: E402

TD_ID = "spiffe://example.org"
HERE = os.path.dirname(os.path.abspath(__file__))
CGROUP_ROOTS = ("/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified", "/sys/fs/cgroup")


def cgroup_root():
    """A cgroup hierarchy this process may create groups in, or None."""
    for root in CGROUP_ROOTS:
        if os.path.exists(os.path.join(root, "cgroup.procs")):
            probe = os.path.join(root, "trellis-probe-%d" % os.getpid())
            try:
                os.mkdir(probe)
                os.rmdir(probe)
                return root
            except OSError:
                continue
    return None


class Cgroup:
    """A cgroup at `relative` under a writable hierarchy, removed (with its parents the test
    made) once the processes in it have exited."""

    def __init__(self, relative):
        root = cgroup_root()
        if root is None:
            raise unittest.SkipTest("no writable cgroup hierarchy on this machine")
        self.path = os.path.join(root, relative.strip("/"))
        self.made = []
        p = root
        for part in relative.strip("/").split("/"):
            p = os.path.join(p, part)
            if not os.path.exists(p):
                os.mkdir(p)
                self.made.append(p)

    @property
    def procs(self):
        return os.path.join(self.path, "cgroup.procs")

    def remove(self):
        def empty():
            with open(self.procs) as f:
                return not f.read().strip()
        wait_for(empty, timeout=30, what="processes leaving " + self.path)
        for p in reversed(self.made):
            os.rmdir(p)


class PlatformAttestationTest(DeploymentTest):

    def cgroup(self, relative):
        cg = Cgroup(relative)
        self.addCleanup(cg.remove)
        return cg

    def fetch_in_cgroup(self, agent, cgroup):
        """Runs a workload that moves itself into `cgroup` and fetches its X509-SVIDs; returns
        the gRPC status name and the SPIFFE IDs it got."""
        out_dir = self.d.path("proto-out")
        proc = subprocess.run(
            [sys.executable, os.path.join(HERE, "workload_client.py"), "--socket",
             agent.socket_path, "--proto-out", out_dir, "--enter-cgroup", cgroup.procs,
             "fetch-x509-id"], capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        words = proc.stdout.split()
        self.assertTrue(words, proc.stderr)
        return words[0], words[1:]

    def wait_svid(self, agent, cgroup, wanted):
        """The SPIFFE IDs a workload in `cgroup` gets once `wanted` is among them."""
        got = []

        def has():
            status, ids = self.fetch_in_cgroup(agent, cgroup)
            got[:] = ids
            return status == "OK" and wanted in ids
        wait_for(has, timeout=120, interval=0.5, what="an SVID for " + wanted)
        return got

    def selectors_of(self, server, agent_id):
        shown = server.agent(agent_id)
        return {"%s:%s" % (s.get("type"), s.get("value"))
                for s in agent_field(shown, "selectors") or []}

    # ---- Kubernetes ----

    def kubernetes(self):
        api = fakes.FakeKubeApi(self.d.root)
        self.addCleanup(api.close)
        kubelet = fakes.FakeKubelet()
        self.addCleanup(kubelet.close)
        return api, kubelet

    def test_k8s_psat_agent_serves_k8s_selected_workloads(self):
        api, kubelet = self.kubernetes()
        node_uid = str(uuid.uuid4())
        api.add_node("node-a", node_uid, labels={"topology.kubernetes.io/zone": "z1"})
        agent_pod_uid = str(uuid.uuid4())
        api.add_pod(fakes.pod_json("trellis-agent-x1", "trellis", agent_pod_uid, "node-a",
                                   "trellis-agent", "10.1.2.3",
                                   [("agent", "trellis/agent:1", "sha256:aa", "containerd://" +
                                     "a" * 64)], labels={"app": "trellis-agent"}))
        token = "psat-" + uuid.uuid4().hex
        api.accept_token(token, "trellis", "trellis-agent", "trellis-agent-x1", agent_pod_uid)
        token_path = self.d.path("psat-token")
        with open(token_path, "w") as f:
            f.write(token + "\n")
        kubeconfig = api.kubeconfig(self.d.path("kubeconfig.yaml"))

        server = self.d.server(extra_plugins=(
            '  NodeAttestor "k8s_psat" {\n    plugin_data {\n      clusters = {\n'
            '        "it-cluster" = {\n'
            '          service_account_allow_list = ["trellis:trellis-agent"]\n'
            '          kube_config_file = %s\n'
            '          allowed_node_label_keys = ["topology.kubernetes.io/zone"]\n'
            '          allowed_pod_label_keys = ["app"]\n'
            '        }\n      }\n    }\n  }\n') % hcl_string(kubeconfig))
        agent_id = "%s/spire/agent/k8s_psat/it-cluster/%s" % (TD_ID, node_uid)

        pod_uid = str(uuid.uuid4())
        cid = uuid.uuid4().hex + uuid.uuid4().hex
        kubelet.pods = [fakes.pod_json(
            "web-7d9f", "prod", pod_uid, "node-a", "web", "10.1.2.3",
            [("web", "registry.example/web:2.1", "registry.example/web@sha256:" + "b" * 64,
              "containerd://" + cid)], labels={"app": "web"},
            owner=("ReplicaSet", "web-7d9f", str(uuid.uuid4())))]
        web_id = spiffe_id("ns/prod/sa/web")
        server.create_entry(agent_id, web_id, ["k8s:ns:prod", "k8s:sa:web",
                                               "k8s:container-name:web"])
        other_id = spiffe_id("ns/prod/sa/db")
        server.create_entry(agent_id, other_id, ["k8s:ns:prod", "k8s:sa:db"])
        # A node alias for every agent of the cluster, and an entry under it.
        alias_id = spiffe_id("k8s/it-cluster")
        server.cli("entry", "create", "-node", "-spiffeID", alias_id, "-selector",
                   "k8s_psat:cluster:it-cluster", check=True)
        labelled_id = spiffe_id("apps/web")
        server.create_entry(alias_id, labelled_id, ["k8s:pod-label:app:web",
                                                    "k8s:pod-image-count:1"])

        agent = self.d.agent(
            server, node_attestor="k8s_psat",
            attestor_data={"cluster": "it-cluster", "token_path": token_path},
            extra_plugins=('  WorkloadAttestor "k8s" {\n    plugin_data {\n'
                           '      kubelet_read_only_port = %d\n'
                           '      max_poll_attempts = 240\n'
                           '      poll_retry_interval = "250ms"\n    }\n  }\n' % kubelet.port))

        selectors = self.selectors_of(server, agent_id)
        for want in ("k8s_psat:cluster:it-cluster", "k8s_psat:agent_ns:trellis",
                     "k8s_psat:agent_sa:trellis-agent", "k8s_psat:agent_pod_name:trellis-agent-x1",
                     "k8s_psat:agent_pod_uid:" + agent_pod_uid, "k8s_psat:agent_node_ip:10.1.2.3",
                     "k8s_psat:agent_node_name:node-a", "k8s_psat:agent_node_uid:" + node_uid,
                     "k8s_psat:agent_node_label:topology.kubernetes.io/zone:z1",
                     "k8s_psat:agent_pod_label:app:trellis-agent"):
            self.assertIn(want, selectors)
        self.assertEqual(agent_field(server.agent(agent_id), "attestation_type"), "k8s_psat")

        pod_cg = self.cgroup("kubepods/besteffort/pod%s/%s" % (pod_uid, cid))
        wait_for(lambda: set(self.fetch_in_cgroup(agent, pod_cg)[1]) == {web_id, labelled_id},
                 timeout=120, interval=0.5, what="SVIDs for " + web_id + " and " + labelled_id)
        # The db entry's selectors do not match this pod.
        self.assertEqual(sorted(self.fetch_in_cgroup(agent, pod_cg)[1]),
                         sorted([web_id, labelled_id]))

        # A process in no pod gets nothing from the k8s attestor: no entry matches it.
        outside = self.cgroup("trellis-it-outside-%d" % os.getpid())
        self.assertEqual(self.fetch_in_cgroup(agent, outside), ("PERMISSION_DENIED", []))

    def test_k8s_psat_refuses_a_service_account_not_allowed(self):
        api, _ = self.kubernetes()
        node_uid = str(uuid.uuid4())
        api.add_node("node-b", node_uid)
        pod_uid = str(uuid.uuid4())
        api.add_pod(fakes.pod_json("intruder", "default", pod_uid, "node-b", "default",
                                   "10.1.2.4", [("c", "i", "sha256:cc", "containerd://" + "c" * 64)]))
        token = "psat-" + uuid.uuid4().hex
        api.accept_token(token, "default", "default", "intruder", pod_uid)
        token_path = self.d.path("bad-token")
        with open(token_path, "w") as f:
            f.write(token)
        server = self.d.server(extra_plugins=(
            '  NodeAttestor "k8s_psat" {\n    plugin_data {\n      clusters = {\n'
            '        "it-cluster" = {\n'
            '          service_account_allow_list = ["trellis:trellis-agent"]\n'
            '          kube_config_file = %s\n        }\n      }\n    }\n  }\n')
            % hcl_string(api.kubeconfig(self.d.path("kubeconfig.yaml"))))
        agent = self.d.agent(server, node_attestor="k8s_psat", start=False,
                             attestor_data={"cluster": "it-cluster", "token_path": token_path})
        agent.start(wait=False)
        self.assertNotEqual(agent.process.wait_exit(), 0)
        self.assertIn("not allowed", agent.process.log())
        wait_for(lambda: "default:default" in server.process.log(), what="the refusal logged")
        self.assertEqual(server.agents(), [])

    # ---- Docker ----

    def test_docker_workload_selected_by_label_and_image(self):
        sock = self.d.path("docker.sock")
        docker = fakes.FakeDocker(sock)
        self.addCleanup(docker.close)
        cid = uuid.uuid4().hex + uuid.uuid4().hex
        docker.add_container(cid, "registry.example/api:3", "sha256:" + "d" * 64,
                             {"com.example.team": "payments"}, ["ENVIRONMENT=prod", "PATH=/bin"])
        server = self.d.server()
        token = server.generate_token()
        agent = self.d.agent(server, join_token=token, extra_plugins=(
            '  WorkloadAttestor "docker" {\n    plugin_data {\n'
            '      docker_socket_path = %s\n    }\n  }\n' % hcl_string("unix://" + sock)))
        api_id = spiffe_id("payments/api")
        server.create_entry(agent.spiffe_id, api_id,
                            ["docker:label:com.example.team:payments",
                             "docker:image_id:registry.example/api:3",
                             "docker:env:ENVIRONMENT=prod"])
        container_cg = self.cgroup("docker/" + cid)
        self.assertEqual(self.wait_svid(agent, container_cg, api_id), [api_id])

    # ---- Clouds ----

    def test_aws_iid_attests_once_per_instance(self):
        document = {"accountId": "123456789012", "architecture": "x86_64",
                    "availabilityZone": "eu-west-1a", "imageId": "ami-0abcdef1234567890",
                    "instanceId": "i-0123456789abcdef0", "instanceType": "t3.small",
                    "pendingTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "privateIp": "10.0.0.5", "region": "eu-west-1", "version": "2017-09-30"}
        imds = fakes.FakeAwsImds(document)
        self.addCleanup(imds.close)
        cert_path = self.d.path("aws-it.pem")
        with open(cert_path, "wb") as f:
            f.write(fakes.pem(imds.cert))
        server = self.d.server(extra_plugins=(
            '  NodeAttestor "aws_iid" {\n    plugin_data {\n'
            '      account_ids = ["123456789012"]\n'
            '      aws_ca_cert_paths = [%s]\n    }\n  }\n' % hcl_string(cert_path)))
        agent_id = "%s/spire/agent/aws_iid/123456789012/eu-west-1/i-0123456789abcdef0" % TD_ID
        self.d.agent(server, node_attestor="aws_iid",
                     attestor_data={"ec2_metadata_endpoint": "http://127.0.0.1:%d" % imds.port})
        selectors = self.selectors_of(server, agent_id)
        for want in ("aws_iid:az:eu-west-1a", "aws_iid:image:id:ami-0abcdef1234567890",
                     "aws_iid:instance:id:i-0123456789abcdef0", "aws_iid:region:eu-west-1"):
            self.assertIn(want, selectors)
        # The same instance document again (a second agent, or a replay) is refused.
        second = self.d.agent(server, name="again", node_attestor="aws_iid", start=False,
                              attestor_data={"ec2_metadata_endpoint":
                                             "http://127.0.0.1:%d" % imds.port})
        second.start(wait=False)
        self.assertNotEqual(second.process.wait_exit(), 0)
        self.assertIn("is already attested", second.process.log())
        self.assertIn("Node attestation refused", server.process.log())
        self.assertEqual(len(server.agents()), 1)

    def test_gcp_iit_attests_the_instance(self):
        meta = fakes.FakeGcpMetadata("trellis-it", "europe-west1-b", "4242424242",
                                     "node-gcp-1")
        self.addCleanup(meta.close)
        jwks = self.d.path("google-certs.json")
        with open(jwks, "w") as f:
            f.write(json.dumps(meta.jwks()))
        server = self.d.server(extra_plugins=(
            '  NodeAttestor "gcp_iit" {\n    plugin_data {\n'
            '      projectid_allow_list = ["trellis-it"]\n'
            '      google_certs_url = %s\n    }\n  }\n' % hcl_string(jwks)))
        self.d.agent(server, node_attestor="gcp_iit",
                     attestor_data={"identity_token_host": "127.0.0.1:%d" % meta.port})
        agent_id = "%s/spire/agent/gcp_iit/trellis-it/4242424242" % TD_ID
        selectors = self.selectors_of(server, agent_id)
        for want in ("gcp_iit:project-id:trellis-it", "gcp_iit:zone:europe-west1-b",
                     "gcp_iit:instance-name:node-gcp-1"):
            self.assertIn(want, selectors)

    def test_azure_msi_attests_the_managed_identity(self):
        tenant = str(uuid.uuid4())
        principal = str(uuid.uuid4())
        imds = fakes.FakeAzureImds(tenant, principal)
        self.addCleanup(imds.close)
        keys_dir = self.d.path("azure-keys")
        os.makedirs(keys_dir)
        with open(os.path.join(keys_dir, tenant + ".json"), "w") as f:
            f.write(json.dumps(imds.jwks()))
        server = self.d.server(extra_plugins=(
            '  NodeAttestor "azure_msi" {\n    plugin_data {\n'
            '      tenants = {\n        %s = {}\n      }\n'
            '      jwks_url = %s\n    }\n  }\n'
            % (hcl_string(tenant), hcl_string(os.path.join(keys_dir, "{tenant}.json")))))
        self.d.agent(server, node_attestor="azure_msi",
                     attestor_data={"metadata_endpoint": "http://127.0.0.1:%d" % imds.port})
        agent_id = "%s/spire/agent/azure_msi/%s/%s" % (TD_ID, tenant, principal)
        selectors = self.selectors_of(server, agent_id)
        self.assertIn("azure_msi:tenant-id:" + tenant, selectors)
        self.assertIn("azure_msi:principal-id:" + principal, selectors)
        self.assertIn("azure_msi:subscription-id:" + imds.subscription, selectors)
        self.assertIn("azure_msi:vm-name:%s:%s" % (imds.resource_group, imds.vm_name), selectors)


if __name__ == "__main__":
    unittest.main()
