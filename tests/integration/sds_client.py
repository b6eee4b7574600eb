# An Envoy SDS v3 client in Python grpcio, built at run time from proto/envoy (Envoy's field
# numbers) the way another implementation would, reading secrets the way Envoy reads them.
"""SDS client for the tests."""

import atexit
import importlib
import os
import queue
import shutil
import sys
import tempfile
import threading

import grpc

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROTO_DIR = os.path.join(REPO_ROOT, "proto")
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
VALIDATOR_TYPE = ("type.googleapis.com/"
                  "envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig")
PROTOS = [
    "google/rpc/status.proto",
    "envoy/config/core/v3/base.proto",
    "envoy/config/core/v3/extension.proto",
    "envoy/service/discovery/v3/discovery.proto",
    "envoy/service/secret/v3/sds.proto",
    "envoy/extensions/transport_sockets/tls/v3/common.proto",
    "envoy/extensions/transport_sockets/tls/v3/secret.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls_spiffe_validator_config.proto",
]

_modules = None


def modules():
    """(discovery_pb2, sds_pb2_grpc, secret_pb2, validator_pb2, base_pb2, status_pb2)."""
    global _modules
    if _modules is not None:
        return _modules
    from grpc_tools import protoc
    import grpc_tools
    out_dir = tempfile.mkdtemp(prefix="trellis-envoy-proto-")
    atexit.register(shutil.rmtree, out_dir, True)
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main(["grpc_tools.protoc", "-I", PROTO_DIR, "-I", well_known,
                      "--python_out", out_dir, "--grpc_python_out", out_dir] +
                     [os.path.join(PROTO_DIR, p) for p in PROTOS])
    if rc != 0:
        raise RuntimeError("grpc_tools.protoc failed on the Envoy protos (%d)" % rc)
    sys.path.insert(0, out_dir)
    # google.protobuf comes from the system; google.rpc from here.
    import google
    google.__path__.append(os.path.join(out_dir, "google"))
    _modules = tuple(importlib.import_module(m) for m in (
        "envoy.service.discovery.v3.discovery_pb2",
        "envoy.service.secret.v3.sds_pb2_grpc",
        "envoy.extensions.transport_sockets.tls.v3.secret_pb2",
        "envoy.extensions.transport_sockets.tls.v3.tls_spiffe_validator_config_pb2",
        "envoy.config.core.v3.base_pb2",
        "google.rpc.status_pb2"))
    return _modules


class SdsClient:
    """StreamSecrets / FetchSecrets / DeltaSecrets on an agent's socket (no security header)."""

    def __init__(self, socket_path):
        (self.discovery, sds_grpc, self.secret, self.validator, self.base,
         self.status) = modules()
        self.channel = grpc.insecure_channel("unix:" + socket_path)
        self.stub = sds_grpc.SecretDiscoveryServiceStub(self.channel)

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, names, version="", nonce="", error=None, node_id="envoy-test"):
        req = self.discovery.DiscoveryRequest(
            version_info=version, resource_names=list(names), type_url=SECRET_TYPE,
            response_nonce=nonce)
        if node_id:
            req.node.id = node_id
            req.node.cluster = "test-cluster"
        if error is not None:
            req.error_detail.code = 3
            req.error_detail.message = error
        return req

    def stream(self, timeout=120):
        return SecretStream(self, timeout)

    def fetch(self, names, timeout=30):
        return self.stub.FetchSecrets(self.request(names), timeout=timeout)

    def delta(self, timeout=30):
        reqs = iter([self.discovery.DeltaDiscoveryRequest(type_url=SECRET_TYPE,
                                                          resource_names_subscribe=["default"])])
        return list(self.stub.DeltaSecrets(reqs, timeout=timeout))

    def secrets(self, response):
        """The response's resources unpacked, by name."""
        out = {}
        for any_msg in response.resources:
            if any_msg.type_url != SECRET_TYPE:
                raise AssertionError("resource of type %s" % any_msg.type_url)
            s = self.secret.Secret()
            any_msg.Unpack(s)
            out[s.name] = s
        return out

    def spiffe_validator(self, secret):
        """{trust domain name: PEM} of an ALL secret's SPIFFE validator config."""
        cfg = secret.validation_context.custom_validator_config
        if cfg.name != "envoy.tls.cert_validator.spiffe":
            raise AssertionError("validator %r" % cfg.name)
        if cfg.typed_config.type_url != VALIDATOR_TYPE:
            raise AssertionError("validator config of type %s" % cfg.typed_config.type_url)
        v = self.validator.SPIFFECertValidatorConfig()
        cfg.typed_config.Unpack(v)
        return {td.name: td.trust_bundle.inline_bytes for td in v.trust_domains}


class SecretStream:
    """One StreamSecrets call: send() requests, next() responses with a deadline."""

    def __init__(self, client, timeout):
        self.client = client
        self._requests = queue.Queue()
        self._responses = queue.Queue()
        self.call = client.stub.StreamSecrets(iter(self._requests.get, None), timeout=timeout)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        try:
            for resp in self.call:
                self._responses.put(resp)
            self._responses.put(None)
        except grpc.RpcError as e:
            self._responses.put(e)

    def send(self, req):
        self._requests.put(req)

    def next(self, timeout=60):
        """The next response; raises the call's error if it ended, AssertionError on timeout."""
        try:
            item = self._responses.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no SDS response within %ss" % timeout)
        if isinstance(item, grpc.RpcError):
            raise item
        if item is None:
            raise AssertionError("the SDS stream ended")
        return item

    def close(self):
        self._requests.put(None)
        self.call.cancel()
