# Loopback stand-ins for the platform APIs the attestors call, speaking the real paths and
# JSON: the Kubernetes API (TokenReview, pods, nodes), the kubelet's /pods, the Docker Engine
# API on a Unix socket, AWS IMDSv2, the GCP metadata identity endpoint and Azure IMDS.
"""Fake platform APIs for the attestor integration tests. Keys are generated here."""

import base64
import datetime
import http.server
import json
import os
import socketserver
import ssl
import threading
import time
import urllib.parse

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_server_cert(ca_key, ca_cert, host="127.0.0.1"):
    import ipaddress
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(host)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet; the fake records calls instead
        pass

    def address_string(self):
        return "local"

    def _send(self, code, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        self.server.fake.record(self.command, self.path)
        self.server.fake.handle(self, "GET")

    def do_POST(self):
        self.server.fake.record(self.command, self.path)
        self.server.fake.handle(self, "POST")

    def do_PUT(self):
        self.server.fake.record(self.command, self.path)
        self.server.fake.handle(self, "PUT")


class _TcpServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _Fake:
    """Serves on 127.0.0.1 (optionally over TLS) or on a Unix socket, in a thread."""

    def __init__(self, tls=None, unix_path=None):
        self.calls = []
        self._lock = threading.Lock()
        if unix_path:
            self.httpd = _UnixServer(unix_path, _Handler)
        else:
            self.httpd = _TcpServer(("127.0.0.1", 0), _Handler)
            if tls:
                self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.fake = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self):
        return self.httpd.server_address[1]

    def record(self, method, path):
        with self._lock:
            self.calls.append((method, path))

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _status_404(kind, name):
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": '%s "%s" not found' % (kind, name), "reason": "NotFound", "code": 404}


def pod_json(name, namespace, uid, node, sa, host_ip, containers, labels=None, owner=None):
    """A v1 Pod. containers: [(name, image, image_id, container_id with runtime prefix)]."""
    meta = {"name": name, "namespace": namespace, "uid": uid, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1],
                                    "uid": owner[2], "controller": True}]
    return {
        "kind": "Pod", "apiVersion": "v1", "metadata": meta,
        "spec": {"nodeName": node, "serviceAccountName": sa,
                 "containers": [{"name": c[0], "image": c[1]} for c in containers]},
        "status": {"phase": "Running", "hostIP": host_ip, "podIP": "10.0.0.9",
                   "containerStatuses": [{"name": c[0], "image": c[1], "imageID": c[2],
                                          "containerID": c[3], "ready": True,
                                          "state": {"running": {}}} for c in containers]},
    }


class FakeKubeApi(_Fake):
    """The Kubernetes API server over TLS: TokenReview, pods and nodes, with a bearer token."""

    def __init__(self, workdir):
        self.ca_key, self.ca = make_ca("fake-kube-ca")
        key, cert = make_server_cert(self.ca_key, self.ca)
        cert_path = os.path.join(workdir, "kube-api.pem")
        key_path = os.path.join(workdir, "kube-api.key")
        with open(cert_path, "wb") as f:
            f.write(pem(cert))
        with open(key_path, "wb") as f:
            f.write(key_pem(key))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_path, key_path)
        self.admin_token = base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
        self.pods = {}      # (ns, name) -> pod json
        self.nodes = {}     # name -> node json
        self.reviews = {}   # token -> (audiences, user dict)
        super().__init__(tls=ctx)

    def kubeconfig(self, path):
        ca = base64.b64encode(pem(self.ca)).decode()
        text = ("apiVersion: v1\nkind: Config\ncurrent-context: it\n"
                "clusters:\n- name: it\n  cluster:\n    server: https://127.0.0.1:%d\n"
                "    certificate-authority-data: %s\n"
                "users:\n- name: trellis\n  user:\n    token: %s\n"
                "contexts:\n- name: it\n  context:\n    cluster: it\n    user: trellis\n"
                % (self.port, ca, self.admin_token))
        with open(path, "w") as f:
            f.write(text)
        return path

    def add_node(self, name, uid, labels=None):
        self.nodes[name] = {"kind": "Node", "apiVersion": "v1",
                            "metadata": {"name": name, "uid": uid, "labels": labels or {}}}

    def add_pod(self, pod):
        self.pods[(pod["metadata"]["namespace"], pod["metadata"]["name"])] = pod

    def accept_token(self, token, namespace, sa, pod_name, pod_uid, audiences=("spire-server",)):
        self.reviews[token] = (list(audiences), {
            "username": "system:serviceaccount:%s:%s" % (namespace, sa),
            "uid": "sa-uid-" + sa,
            "groups": ["system:serviceaccounts", "system:serviceaccounts:" + namespace],
            "extra": {"authentication.kubernetes.io/pod-name": [pod_name],
                      "authentication.kubernetes.io/pod-uid": [pod_uid]}})

    def handle(self, h, method):
        if h.headers.get("Authorization") != "Bearer " + self.admin_token:
            return h._send(401, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "message": "Unauthorized", "reason": "Unauthorized",
                                 "code": 401})
        path = urllib.parse.urlparse(h.path).path
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/apis/authentication.k8s.io/v1/tokenreviews":
            review = json.loads(h._body())
            token = review["spec"]["token"]
            wanted = review["spec"].get("audiences") or []
            status = {"authenticated": False, "error": "invalid bearer token"}
            if token in self.reviews:
                audiences, user = self.reviews[token]
                common = [a for a in wanted if a in audiences]
                if wanted and not common:
                    status = {"authenticated": False,
                              "error": "token audiences %s is invalid for the target audiences %s"
                                       % (audiences, wanted)}
                else:
                    status = {"authenticated": True, "user": user,
                              "audiences": common or audiences}
            review["status"] = status
            return h._send(201, review)
        if method == "GET" and len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] \
                and parts[4] == "pods":
            pod = self.pods.get((parts[3], parts[5]))
            return h._send(200, pod) if pod else h._send(404, _status_404("pods", parts[5]))
        if method == "GET" and len(parts) == 4 and parts[:3] == ["api", "v1", "nodes"]:
            node = self.nodes.get(parts[3])
            return h._send(200, node) if node else h._send(404, _status_404("nodes", parts[3]))
        return h._send(404, _status_404("path", path))


class FakeKubelet(_Fake):
    """The kubelet's read-only port: GET /pods, a v1 PodList of this node's pods."""

    def __init__(self):
        self.pods = []
        super().__init__()

    def handle(self, h, method):
        if method == "GET" and urllib.parse.urlparse(h.path).path == "/pods":
            return h._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {},
                                 "items": self.pods})
        return h._send(404, "404 page not found\n", "text/plain")


class FakeDocker(_Fake):
    """The Docker Engine API on a Unix socket: GET /v<version>/containers/<id>/json."""

    def __init__(self, socket_path):
        self.containers = {}
        super().__init__(unix_path=socket_path)

    def add_container(self, cid, image, image_id, labels, env):
        self.containers[cid] = {"Id": cid, "Image": image_id, "Name": "/web",
                                "State": {"Status": "running", "Running": True},
                                "Config": {"Image": image, "Labels": labels, "Env": env}}

    def handle(self, h, method):
        parts = urllib.parse.urlparse(h.path).path.strip("/").split("/")
        if method == "GET" and len(parts) == 4 and parts[1] == "containers" and parts[3] == "json":
            c = self.containers.get(parts[2])
            if c:
                return h._send(200, c)
            return h._send(404, {"message": "No such container: " + parts[2]})
        return h._send(404, {"message": "page not found"})


class FakeAwsImds(_Fake):
    """IMDSv2: a session token first (PUT), then the instance identity document, its SHA-256
    RSA signature and its RSA-2048 PKCS#7 signature, signed by a certificate made here."""

    def __init__(self, document):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(_name("fake-aws"))
                     .issuer_name(_name("fake-aws")).public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .sign(self.key, hashes.SHA256()))
        self.document = json.dumps(document, indent=2).encode()
        self.token = base64.b64encode(os.urandom(24)).decode()
        super().__init__()

    def signature(self):
        return base64.b64encode(self.key.sign(self.document, padding.PKCS1v15(),
                                              hashes.SHA256())).decode()

    def rsa2048(self):
        der = (pkcs7.PKCS7SignatureBuilder().set_data(self.document)
               .add_signer(self.cert, self.key, hashes.SHA256())
               .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature,
                                                     pkcs7.PKCS7Options.Binary]))
        return base64.b64encode(der).decode()

    def handle(self, h, method):
        path = urllib.parse.urlparse(h.path).path
        if method == "PUT" and path == "/latest/api/token":
            if not h.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return h._send(400, "", "text/plain")
            return h._send(200, self.token, "text/plain")
        if h.headers.get("X-aws-ec2-metadata-token") != self.token:
            return h._send(401, "", "text/plain")
        base = "/latest/dynamic/instance-identity/"
        if path == base + "document":
            return h._send(200, self.document, "text/plain")
        if path == base + "signature":
            return h._send(200, self.signature(), "text/plain")
        if path == base + "rsa2048":
            return h._send(200, self.rsa2048(), "text/plain")
        return h._send(404, "", "text/plain")


class _JwtIssuer:
    def __init__(self, kid):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = kid

    def jwks(self):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.kid, "alg": "RS256", "use": "sig"})
        return {"keys": [jwk]}

    def sign(self, claims):
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})


class FakeGcpMetadata(_Fake, _JwtIssuer):
    """The GCP metadata server's instance identity token (format=full)."""

    def __init__(self, project, zone, instance_id, instance_name):
        _JwtIssuer.__init__(self, "gcp-it-key")
        self.instance = {"project_id": project, "project_number": 424242, "zone": zone,
                         "instance_id": instance_id, "instance_name": instance_name,
                         "instance_creation_timestamp": int(time.time()) - 3600}
        _Fake.__init__(self)

    def handle(self, h, method):
        u = urllib.parse.urlparse(h.path)
        if h.headers.get("Metadata-Flavor") != "Google":
            return h._send(403, "Missing Metadata-Flavor:Google header.", "text/plain")
        if u.path != "/computeMetadata/v1/instance/service-accounts/default/identity":
            return h._send(404, "not found", "text/plain")
        q = urllib.parse.parse_qs(u.query)
        now = int(time.time())
        token = self.sign({"iss": "https://accounts.google.com", "aud": q["audience"][0],
                           "azp": "1234567890", "sub": "1234567890", "iat": now,
                           "exp": now + 3600,
                           "google": {"compute_engine": self.instance}})
        return h._send(200, token, "text/plain")


class FakeAzureImds(_Fake, _JwtIssuer):
    """Azure IMDS's managed identity token endpoint."""

    def __init__(self, tenant, principal, subscription="5e6f7a8b-0000-4000-8000-0000000000c1",
                 resource_group="trellis-it", vm_name="node-1"):
        _JwtIssuer.__init__(self, "azure-it-key")
        self.tenant = tenant
        self.principal = principal
        self.subscription = subscription
        self.resource_group = resource_group
        self.vm_name = vm_name
        # The VM's system-assigned identity: its resource ID is the VM's (IMDS writes
        # "resourcegroups" in lowercase).
        self.mirid = ("/subscriptions/%s/resourcegroups/%s/providers/Microsoft.Compute/"
                      "virtualMachines/%s" % (subscription, resource_group, vm_name))
        _Fake.__init__(self)

    def handle(self, h, method):
        u = urllib.parse.urlparse(h.path)
        if h.headers.get("Metadata") != "true":
            return h._send(400, {"error": "invalid_request",
                                 "error_description": "Required metadata header not specified"})
        if u.path != "/metadata/identity/oauth2/token":
            return h._send(404, {"error": "not_found"})
        q = urllib.parse.parse_qs(u.query)
        resource = q["resource"][0]
        now = int(time.time())
        token = self.sign({"aud": resource, "iss": "https://sts.windows.net/%s/" % self.tenant,
                           "iat": now, "nbf": now, "exp": now + 3600, "tid": self.tenant,
                           "oid": self.principal, "sub": self.principal,
                           "xms_mirid": self.mirid})
        return h._send(200, {"access_token": token, "expires_on": str(now + 3600),
                             "resource": resource, "token_type": "Bearer"})
