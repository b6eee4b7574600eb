"""Checks of examples/k8s: every manifest parses, uses only Kubernetes fields this check knows
(a strict subset of the API), and fits together: selectors, Services, probes against the
health listener of the configuration the container reads, volumes for every path the
configuration names, RBAC, the disruption budget; and every embedded configuration passes
`trellis-server validate` / `trellis-agent validate` as the container's arguments read it."""

import glob
import os
import unittest

import yaml

import deploy_common as dc

K8S_DIR = os.path.join(dc.REPO, "examples", "k8s")
NAMESPACE = "trellis"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}
# Created by the operator (README.md), not shipped: the bootstrap bundle and the DSN.
EXTERNAL = {("ConfigMap", "trellis-bundle"), ("Secret", "trellis-regional-db")}
# Configuration keys whose value is a file or directory the process reads or writes.
FILE_KEYS = {"data_dir", "socket_path", "trust_bundle_path", "token_path",
             "workload_api_socket", "keys_path", "directory", "kubelet_ca_path",
             "certificate_path", "private_key_path", "kube_config_file", "connection_string"}
WRITTEN_KEYS = {"data_dir", "socket_path", "keys_path", "directory", "connection_string"}

# ---- A strict subset of the Kubernetes API: the fields these manifests may use -----------
# A type is a dict of field -> type; "str", "int", "bool", "port" (int or string), "map"
# (string to string), "strlist", a type name, or [type name] for a list.
S = {
    "ObjectMeta": {"name": "str", "namespace": "str", "labels": "map", "annotations": "map"},
    "Namespace": {"apiVersion": "str", "kind": "str", "metadata": "ObjectMeta"},
    "ServiceAccount": {"apiVersion": "str", "kind": "str", "metadata": "ObjectMeta",
                       "automountServiceAccountToken": "bool"},
    "ClusterRole": {"apiVersion": "str", "kind": "str", "metadata": "ObjectMeta",
                    "rules": ["PolicyRule"]},
    "PolicyRule": {"apiGroups": "strlist", "resources": "strlist", "verbs": "strlist",
                   "resourceNames": "strlist"},
    "ClusterRoleBinding": {"apiVersion": "str", "kind": "str", "metadata": "ObjectMeta",
                           "roleRef": "RoleRef", "subjects": ["Subject"]},
    "RoleRef": {"apiGroup": "str", "kind": "str", "name": "str"},
    "Subject": {"kind": "str", "name": "str", "namespace": "str", "apiGroup": "str"},
    "ConfigMap": {"apiVersion": "str", "kind": "str", "metadata": "ObjectMeta", "data": "map"},
    "Service": {"apiVersion": "str", "kind": "str", "metadata": "ObjectMeta",
                "spec": "ServiceSpec"},
    "ServiceSpec": {"type": "str", "clusterIP": "str", "selector": "map",
                    "ports": ["ServicePort"], "publishNotReadyAddresses": "bool"},
    "ServicePort": {"name": "str", "port": "int", "targetPort": "port", "protocol": "str"},
    "StatefulSet": {"apiVersion": "str", "kind": "str", "metadata": "ObjectMeta",
                    "spec": "StatefulSetSpec"},
    "StatefulSetSpec": {"serviceName": "str", "replicas": "int", "selector": "LabelSelector",
                        "template": "PodTemplateSpec",
                        "volumeClaimTemplates": ["PersistentVolumeClaim"],
                        "podManagementPolicy": "str"},
    "PersistentVolumeClaim": {"metadata": "ObjectMeta", "spec": "PVCSpec"},
    "PVCSpec": {"accessModes": "strlist", "resources": "VolumeResources",
                "storageClassName": "str"},
    "VolumeResources": {"requests": "map", "limits": "map"},
    "Deployment": {"apiVersion": "str", "kind": "str", "metadata": "ObjectMeta",
                   "spec": "DeploymentSpec"},
    "DeploymentSpec": {"replicas": "int", "selector": "LabelSelector",
                       "template": "PodTemplateSpec", "strategy": "DeploymentStrategy"},
    "DeploymentStrategy": {"type": "str", "rollingUpdate": "RollingUpdate"},
    "RollingUpdate": {"maxUnavailable": "port", "maxSurge": "port"},
    "DaemonSet": {"apiVersion": "str", "kind": "str", "metadata": "ObjectMeta",
                  "spec": "DaemonSetSpec"},
    "DaemonSetSpec": {"selector": "LabelSelector", "template": "PodTemplateSpec",
                      "updateStrategy": "DaemonSetUpdateStrategy"},
    "DaemonSetUpdateStrategy": {"type": "str", "rollingUpdate": "RollingUpdate"},
    "PodDisruptionBudget": {"apiVersion": "str", "kind": "str", "metadata": "ObjectMeta",
                            "spec": "PDBSpec"},
    "PDBSpec": {"minAvailable": "port", "maxUnavailable": "port", "selector": "LabelSelector"},
    "LabelSelector": {"matchLabels": "map"},
    "PodTemplateSpec": {"metadata": "ObjectMeta", "spec": "PodSpec"},
    "PodSpec": {"serviceAccountName": "str", "hostNetwork": "bool", "hostPID": "bool",
                "dnsPolicy": "str", "shareProcessNamespace": "bool",
                "securityContext": "PodSecurityContext", "affinity": "Affinity",
                "initContainers": ["Container"], "containers": ["Container"],
                "volumes": ["Volume"], "terminationGracePeriodSeconds": "int"},
    "PodSecurityContext": {"runAsNonRoot": "bool", "runAsUser": "int", "runAsGroup": "int",
                           "fsGroup": "int", "seccompProfile": "SeccompProfile"},
    "SeccompProfile": {"type": "str"},
    "Affinity": {"podAntiAffinity": "PodAntiAffinity"},
    "PodAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": ["PodAffinityTerm"]},
    "PodAffinityTerm": {"topologyKey": "str", "labelSelector": "LabelSelector"},
    "Container": {"name": "str", "image": "str", "imagePullPolicy": "str", "command": "strlist",
                  "args": "strlist", "env": ["EnvVar"], "ports": ["ContainerPort"],
                  "livenessProbe": "Probe", "readinessProbe": "Probe",
                  "securityContext": "SecurityContext", "volumeMounts": ["VolumeMount"],
                  "resources": "VolumeResources"},
    "EnvVar": {"name": "str", "value": "str", "valueFrom": "EnvVarSource"},
    "EnvVarSource": {"fieldRef": "ObjectFieldSelector", "secretKeyRef": "KeySelector",
                     "configMapKeyRef": "KeySelector"},
    "ObjectFieldSelector": {"fieldPath": "str", "apiVersion": "str"},
    "KeySelector": {"name": "str", "key": "str", "optional": "bool"},
    "ContainerPort": {"name": "str", "containerPort": "int", "protocol": "str"},
    "Probe": {"httpGet": "HTTPGetAction", "initialDelaySeconds": "int", "periodSeconds": "int",
              "timeoutSeconds": "int", "failureThreshold": "int", "successThreshold": "int"},
    "HTTPGetAction": {"path": "str", "port": "port", "host": "str", "scheme": "str"},
    "SecurityContext": {"runAsNonRoot": "bool", "runAsUser": "int", "runAsGroup": "int",
                        "allowPrivilegeEscalation": "bool", "readOnlyRootFilesystem": "bool",
                        "capabilities": "Capabilities", "privileged": "bool"},
    "Capabilities": {"drop": "strlist", "add": "strlist"},
    "VolumeMount": {"name": "str", "mountPath": "str", "readOnly": "bool", "subPath": "str"},
    "Volume": {"name": "str", "configMap": "ConfigMapVolume", "secret": "SecretVolume",
               "emptyDir": "EmptyDir", "hostPath": "HostPath", "projected": "Projected"},
    "ConfigMapVolume": {"name": "str", "optional": "bool"},
    "SecretVolume": {"secretName": "str", "optional": "bool"},
    "EmptyDir": {"medium": "str", "sizeLimit": "str"},
    "HostPath": {"path": "str", "type": "str"},
    "Projected": {"sources": ["VolumeProjection"]},
    "VolumeProjection": {"serviceAccountToken": "SATokenProjection"},
    "SATokenProjection": {"path": "str", "audience": "str", "expirationSeconds": "int"},
}
API_VERSIONS = {"Namespace": "v1", "ServiceAccount": "v1", "ConfigMap": "v1", "Service": "v1",
                "ClusterRole": "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
                "StatefulSet": "apps/v1", "Deployment": "apps/v1", "DaemonSet": "apps/v1",
                "PodDisruptionBudget": "policy/v1"}


def check_fields(value, typ, where, errors):
    if isinstance(typ, list):
        if not isinstance(value, list):
            errors.append(f"{where}: expected a list")
            return
        for i, item in enumerate(value):
            check_fields(item, typ[0], f"{where}[{i}]", errors)
        return
    scalar = {"str": str, "int": int, "bool": bool}
    if typ in scalar:
        if not isinstance(value, scalar[typ]) or (typ == "int" and isinstance(value, bool)):
            errors.append(f"{where}: expected {typ}, found {value!r}")
    elif typ == "port":
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            errors.append(f"{where}: expected an integer or a string, found {value!r}")
    elif typ == "map":
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            errors.append(f"{where}: expected a map of strings to strings")
    elif typ == "strlist":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            errors.append(f"{where}: expected a list of strings")
    else:
        fields = S[typ]
        if not isinstance(value, dict):
            errors.append(f"{where}: expected an object ({typ})")
            return
        for key, sub in value.items():
            if key not in fields:
                errors.append(f"{where}.{key}: not a field of {typ}")
            else:
                check_fields(sub, fields[key], f"{where}.{key}", errors)


def load_objects():
    objects = []
    for path in sorted(glob.glob(os.path.join(K8S_DIR, "*.yaml"))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    objects.append((os.path.basename(path), doc))
    return objects


def pod_specs(objects):
    """(object, pod spec, template labels) of every workload."""
    return [(o, o["spec"]["template"]["spec"], o["spec"]["template"]["metadata"]["labels"])
            for _, o in objects if o.get("kind") in WORKLOAD_KINDS]


def all_containers(spec):
    return spec.get("initContainers", []) + spec["containers"]


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class K8sManifestsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.objects = load_objects()
        cls.by_kind = {}
        for _, o in cls.objects:
            cls.by_kind.setdefault(o.get("kind"), {})[o["metadata"]["name"]] = o

    def obj(self, kind, name):
        self.assertIn(name, self.by_kind.get(kind, {}), f"no {kind} {name}")
        return self.by_kind[kind][name]

    # The HCL a container reads: (text, expand_env) from its -config argument and mounts.
    def container_config(self, spec, container):
        args = container.get("args", [])
        if "-config" not in args:
            return None
        path = args[args.index("-config") + 1]
        for m in container.get("volumeMounts", []):
            if os.path.dirname(path) == m["mountPath"].rstrip("/"):
                vol = next((v for v in spec["volumes"] if v["name"] == m["name"]), {})
                self.assertIn("configMap", vol, f"{path} is not on a ConfigMap volume")
                cm = self.obj("ConfigMap", vol["configMap"]["name"])
                key = os.path.basename(path)
                self.assertIn(key, cm["data"], f"ConfigMap {cm['metadata']['name']} lacks {key}")
                return cm["data"][key], "-expandEnv" in args
        self.fail(f"container {container['name']}: {path} is on no volume")

    def test_every_manifest_parses_and_names_its_object(self):
        files = glob.glob(os.path.join(K8S_DIR, "*.yaml"))
        self.assertGreaterEqual(len(files), 5)
        self.assertTrue(self.objects)
        for f, o in self.objects:
            where = f"{f}: {o.get('kind')} {o.get('metadata', {}).get('name')}"
            for key in ("apiVersion", "kind"):
                self.assertIsInstance(o.get(key), str, f"{where}: no {key}")
            self.assertTrue(o.get("metadata", {}).get("name"), f"{where}: no metadata.name")
            self.assertIn(o["kind"], API_VERSIONS, f"{where}: a kind this check does not know")
            self.assertEqual(o["apiVersion"], API_VERSIONS[o["kind"]], where)
            if o["kind"] not in CLUSTER_SCOPED:
                self.assertEqual(o["metadata"].get("namespace"), NAMESPACE, where)
        names = [(o["kind"], o["metadata"]["name"]) for _, o in self.objects]
        self.assertEqual(len(names), len(set(names)), "an object is defined twice")

    def test_every_field_is_a_kubernetes_field_of_the_right_type(self):
        for f, o in self.objects:
            errors = []
            check_fields(o, o["kind"], f"{f}: {o['kind']} {o['metadata']['name']}", errors)
            self.assertEqual(errors, [])

    def test_workload_selectors_match_their_pod_template(self):
        for o, spec, labels in pod_specs(self.objects):
            sel = o["spec"]["selector"]["matchLabels"]
            self.assertTrue(matches(sel, labels), o["metadata"]["name"])

    def test_containers_have_images_and_a_locked_down_security_context(self):
        for o, spec, _ in pod_specs(self.objects):
            name = o["metadata"]["name"]
            self.assertTrue(spec["securityContext"].get("runAsNonRoot"), name)
            self.assertNotEqual(spec["securityContext"].get("runAsUser", 0), 0, name)
            for c in all_containers(spec):
                where = f"{name}/{c['name']}"
                self.assertIn(c.get("image"), ("trellis/server:latest", "trellis/agent:latest"),
                              where)
                sc = c.get("securityContext", {})
                self.assertIs(sc.get("readOnlyRootFilesystem"), True, where)
                self.assertIs(sc.get("allowPrivilegeEscalation"), False, where)
                self.assertIn("ALL", sc.get("capabilities", {}).get("drop", []), where)
                self.assertNotIn("privileged", sc, where)
                if sc.get("runAsUser") == 0:
                    # Only an init container may be root, and only to chown.
                    self.assertIn(c, spec.get("initContainers", []), where)
                    self.assertLessEqual(set(sc["capabilities"].get("add", [])), {"CHOWN"})
                    self.assertEqual(c["command"][0], "chown", where)
                else:
                    self.assertEqual(sc.get("capabilities", {}).get("add", []), [], where)

    def test_embedded_configurations_are_valid(self):
        checked = 0
        for o, spec, _ in pod_specs(self.objects):
            for c in spec["containers"]:
                cfg = self.container_config(spec, c)
                self.assertIsNotNone(cfg, f"{o['metadata']['name']}/{c['name']} has no -config")
                text, expand = cfg
                agent = c["image"].startswith("trellis/agent")
                env = {e["name"]: "placeholder-" + e["name"].lower() for e in c.get("env", [])}
                ok, msg = dc.validate_config(text, agent, expand, env)
                self.assertTrue(ok, f"{o['metadata']['name']}/{c['name']}: {msg}")
                checked += 1
        # Every ConfigMap entry is read by some container.
        read = set()
        for o, spec, _ in pod_specs(self.objects):
            for c in spec["containers"]:
                volumes = {v["name"]: v for v in spec.get("volumes", [])}
                for m in c.get("volumeMounts", []):
                    vol = volumes.get(m["name"], {})
                    if "configMap" in vol:
                        args = c.get("args", [])
                        if "-config" in args:
                            read.add((vol["configMap"]["name"],
                                      os.path.basename(args[args.index("-config") + 1])))
        for name, cm in self.by_kind["ConfigMap"].items():
            for key in cm["data"]:
                self.assertIn((name, key), read, f"ConfigMap {name}: {key} is read by nothing")
        self.assertEqual(checked, 4)

    def test_probes_point_at_the_configured_health_listener(self):
        for o, spec, _ in pod_specs(self.objects):
            for c in spec["containers"]:
                where = f"{o['metadata']['name']}/{c['name']}"
                text, _ = self.container_config(spec, c)
                health = dc.health_settings(text)
                self.assertIsNotNone(health, f"{where}: health_checks listener not enabled")
                ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
                for probe, key in (("livenessProbe", "live_path"),
                                   ("readinessProbe", "ready_path")):
                    self.assertIn(probe, c, where)
                    get = c[probe]["httpGet"]
                    self.assertEqual(get["path"], health[key], f"{where} {probe}")
                    port = ports.get(get["port"], get["port"])
                    self.assertEqual(port, health["bind_port"], f"{where} {probe} port")
                    if health["bind_address"] in ("127.0.0.1", "localhost", "::1"):
                        # Reachable by the kubelet only from the host's network namespace.
                        self.assertTrue(spec.get("hostNetwork"), where)
                        self.assertEqual(get.get("host"), "127.0.0.1", f"{where} {probe}")
                    else:
                        self.assertEqual(health["bind_address"], "0.0.0.0", where)
                        self.assertNotIn("host", get, where)

    def test_every_path_a_configuration_names_is_on_a_volume(self):
        for o, spec, _ in pod_specs(self.objects):
            for c in spec["containers"]:
                where = f"{o['metadata']['name']}/{c['name']}"
                text, _ = self.container_config(spec, c)
                mounts = c.get("volumeMounts", [])
                for key, path in dc.hcl_paths(text):
                    if key not in FILE_KEYS:
                        continue
                    on = [m for m in mounts
                          if path == m["mountPath"] or path.startswith(m["mountPath"] + "/")]
                    self.assertTrue(on, f"{where}: {key} {path} is on no volume")
                    if key in WRITTEN_KEYS:
                        self.assertFalse(on[-1].get("readOnly", False),
                                         f"{where}: {key} {path} is read-only")

    def test_volume_mounts_name_declared_volumes_and_referenced_objects_exist(self):
        known = {(k, n) for k, objs in self.by_kind.items() for n in objs} | EXTERNAL
        for o, spec, _ in pod_specs(self.objects):
            name = o["metadata"]["name"]
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            claims = {t["metadata"]["name"]
                      for t in o["spec"].get("volumeClaimTemplates", [])}
            self.assertEqual(len(volumes), len(spec.get("volumes", [])), name)
            for c in all_containers(spec):
                for m in c.get("volumeMounts", []):
                    self.assertIn(m["name"], set(volumes) | claims, f"{name}/{c['name']}")
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        self.assertIn(("Secret", ref["name"]), known, name)
            for v in volumes.values():
                if "configMap" in v:
                    self.assertIn(("ConfigMap", v["configMap"]["name"]), known, name)
            self.assertIn(spec["serviceAccountName"], self.by_kind["ServiceAccount"], name)

    def test_services_select_a_workload_and_a_named_port(self):
        for name, svc in self.by_kind["Service"].items():
            sel = svc["spec"]["selector"]
            pods = [(spec, labels) for _, spec, labels in pod_specs(self.objects)
                    if matches(sel, labels)]
            self.assertTrue(pods, f"Service {name} selects no workload")
            for p in svc["spec"]["ports"]:
                target = p.get("targetPort", p["port"])
                for spec, _ in pods:
                    ports = {(cp.get("name"), cp["containerPort"])
                             for c in spec["containers"] for cp in c.get("ports", [])}
                    self.assertTrue(any(target in pair for pair in ports),
                                    f"Service {name}: no container port {target}")

    def test_root_tier_is_a_statefulset_with_its_volume_and_headless_service(self):
        sts = self.obj("StatefulSet", "trellis-root")
        headless = self.obj("Service", sts["spec"]["serviceName"])
        self.assertEqual(headless["spec"].get("clusterIP"), "None")
        self.assertTrue(matches(headless["spec"]["selector"],
                                sts["spec"]["template"]["metadata"]["labels"]))
        self.assertEqual(sts["spec"]["replicas"], 1)  # SQLite has a single writer
        claims = sts["spec"]["volumeClaimTemplates"]
        self.assertEqual(len(claims), 1)
        text, _ = self.container_config(sts["spec"]["template"]["spec"],
                                        sts["spec"]["template"]["spec"]["containers"][0])
        paths = dict(dc.hcl_paths(text))
        mount = next(m for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
                     if m["name"] == claims[0]["metadata"]["name"])
        for key in ("data_dir", "connection_string", "keys_path"):
            self.assertTrue(paths[key].startswith(mount["mountPath"] + "/"), key)
        self.assertIn('database_type = "sqlite3"', text)

    def test_regional_tier_runs_three_postgres_replicas_each_beside_a_root_agent(self):
        dep = self.obj("Deployment", "trellis-regional")
        spec = dep["spec"]["template"]["spec"]
        self.assertEqual(dep["spec"]["replicas"], 3)
        server = next(c for c in spec["containers"] if c["image"] == "trellis/server:latest")
        agent = next(c for c in spec["containers"] if c["image"] == "trellis/agent:latest")
        server_text, _ = self.container_config(spec, server)
        agent_text, _ = self.container_config(spec, agent)
        self.assertIn('database_type = "postgres"', server_text)
        upstream = dc.hcl_scalars(dc.hcl_block(server_text, 'UpstreamAuthority "spire"'))
        agent_socket = dict(dc.hcl_paths(agent_text))["socket_path"]
        self.assertEqual(upstream["workload_api_socket"], agent_socket)
        # The upstream is the root's Service, and so is the sidecar agent's server.
        root_svc = "trellis-root." + NAMESPACE + ".svc"
        self.assertEqual(upstream["server_address"], root_svc)
        self.assertEqual(dc.hcl_scalars(dc.hcl_block(agent_text, "agent"))["server_address"],
                         root_svc)
        # The socket's volume is shared by the two containers and is pod-private.
        def volume_of(c, path):
            return next(m["name"] for m in c["volumeMounts"]
                        if path.startswith(m["mountPath"] + "/"))
        vol = volume_of(agent, agent_socket)
        self.assertEqual(volume_of(server, agent_socket), vol)
        self.assertIn("emptyDir", next(v for v in spec["volumes"] if v["name"] == vol))
        self.assertTrue(spec.get("shareProcessNamespace"))
        self.assertNotEqual(agent["securityContext"].get("runAsUser"),
                            spec["securityContext"]["runAsUser"])
        terms = spec["affinity"]["podAntiAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]
        self.assertEqual(terms[0]["topologyKey"], "kubernetes.io/hostname")
        self.assertTrue(matches(terms[0]["labelSelector"]["matchLabels"],
                                dep["spec"]["template"]["metadata"]["labels"]))

    def test_disruption_budget_keeps_two_regional_replicas(self):
        pdb = self.obj("PodDisruptionBudget", "trellis-regional")
        dep = self.obj("Deployment", "trellis-regional")
        self.assertEqual(pdb["spec"]["minAvailable"], 2)
        self.assertTrue(matches(pdb["spec"]["selector"]["matchLabels"],
                                dep["spec"]["template"]["metadata"]["labels"]))
        self.assertGreater(dep["spec"]["replicas"], pdb["spec"]["minAvailable"])

    def test_node_agent_daemonset_reaches_the_kubelet_and_shares_its_socket(self):
        ds = self.obj("DaemonSet", "trellis-agent")
        spec = ds["spec"]["template"]["spec"]
        self.assertIs(spec.get("hostNetwork"), True)
        self.assertIs(spec.get("hostPID"), True)
        self.assertEqual(spec.get("dnsPolicy"), "ClusterFirstWithHostNet")
        agent = spec["containers"][0]
        text, _ = self.container_config(spec, agent)
        k8s = dc.hcl_scalars(dc.hcl_block(text, 'WorkloadAttestor "k8s"'))
        self.assertEqual(k8s.get("kubelet_host", "127.0.0.1"), "127.0.0.1")
        node_env = k8s.get("node_name_env", "MY_NODE_NAME")
        env = {e["name"]: e for e in agent["env"]}
        self.assertEqual(env[node_env]["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName")
        # The projected token k8s_psat sends.
        token_path = dc.hcl_scalars(dc.hcl_block(text, 'NodeAttestor "k8s_psat"'))["token_path"]
        self.assertEqual(token_path, "/var/run/secrets/tokens/spire-agent")
        for o, pspec, _ in pod_specs(self.objects):
            for c in pspec["containers"]:
                if c["image"] != "trellis/agent:latest":
                    continue
                mount = next(m for m in c["volumeMounts"]
                             if m["mountPath"] == os.path.dirname(token_path))
                vol = next(v for v in pspec["volumes"] if v["name"] == mount["name"])
                src = vol["projected"]["sources"][0]["serviceAccountToken"]
                self.assertEqual(src["audience"], "spire-server", o["metadata"]["name"])
                self.assertEqual(src["path"], os.path.basename(token_path))
        # The Workload API directory is the host's /run/trellis/agent.
        socket = dict(dc.hcl_paths(text))["socket_path"]
        self.assertEqual(os.path.dirname(socket), "/run/trellis/agent")
        mount = next(m for m in agent["volumeMounts"] if m["mountPath"] == "/run/trellis/agent")
        vol = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        self.assertEqual(vol["hostPath"]["path"], "/run/trellis/agent")

    def test_rbac_grants_what_attestation_needs(self):
        def grants(role, group, resource, verb):
            return any(group in r.get("apiGroups", []) and resource in r["resources"]
                       and verb in r["verbs"] for r in role["rules"])
        server = self.obj("ClusterRole", "trellis-server")
        self.assertTrue(grants(server, "authentication.k8s.io", "tokenreviews", "create"))
        self.assertTrue(grants(server, "", "pods", "get"))
        self.assertTrue(grants(server, "", "nodes", "get"))
        agent = self.obj("ClusterRole", "trellis-agent")
        for resource in ("nodes/proxy", "nodes", "pods"):
            self.assertTrue(grants(agent, "", resource, "get"), resource)
        # Nothing broader than needed.
        for role in (server, agent):
            for r in role["rules"]:
                self.assertNotIn("*", r["verbs"] + r["resources"] + r["apiGroups"])
        # Bindings: existing roles, existing service accounts; servers and agents bound.
        bound = {}
        for name, b in self.by_kind["ClusterRoleBinding"].items():
            self.obj("ClusterRole", b["roleRef"]["name"])
            for s in b["subjects"]:
                self.assertEqual(s["kind"], "ServiceAccount")
                self.assertEqual(s["namespace"], NAMESPACE)
                self.obj("ServiceAccount", s["name"])
                bound.setdefault(s["name"], set()).add(b["roleRef"]["name"])
        # Every server's account may review tokens; every k8s-attesting agent's may ask the
        # kubelet. The psat allow lists name the agents' accounts.
        for o, spec, _ in pod_specs(self.objects):
            for c in spec["containers"]:
                text, _ = self.container_config(spec, c)
                if 'NodeAttestor "k8s_psat"' in text and c["image"] == "trellis/server:latest":
                    self.assertIn("trellis-server", bound.get(spec["serviceAccountName"], ()))
                if 'WorkloadAttestor "k8s"' in text:
                    self.assertIn("trellis-agent", bound.get(spec["serviceAccountName"], ()))
        allowed = set()
        for cm in self.by_kind["ConfigMap"].values():
            for text in cm["data"].values():
                for line in dc.strip_hcl_comments(text).splitlines():
                    if "service_account_allow_list" in line:
                        allowed.update(x.strip(' "') for x in
                                       line.split("[", 1)[1].split("]")[0].split(","))
        agent_accounts = set()
        for o, spec, _ in pod_specs(self.objects):
            for c in spec["containers"]:
                text, _ = self.container_config(spec, c)
                if c["image"] == "trellis/agent:latest" and 'NodeAttestor "k8s_psat"' in text:
                    agent_accounts.add(f"{NAMESPACE}:{spec['serviceAccountName']}")
        self.assertEqual(agent_accounts, allowed)


if __name__ == "__main__":
    unittest.main()
