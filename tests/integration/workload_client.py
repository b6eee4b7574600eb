# A SPIFFE Workload API client in Python grpcio, built from proto/workload.proto at run time
# the way a third-party client would, plus the X.509 and JWT checks the tests apply to SVIDs.
"""Workload API client and SVID checks.

Also runnable as a script (used to call the agent as another user):
    python3 workload_client.py --socket PATH --proto-out DIR fetch-x509
prints the gRPC status code name of the first FetchX509SVID message (OK or the error).
"""

import argparse
import atexit
import base64
import datetime
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import ExtensionOID

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROTO_DIR = os.path.join(REPO_ROOT, "proto")
HEADER = (("workload.spiffe.io", "true"),)

_modules = None


def compile_proto(out_dir=None):
    """Compiles workload.proto with grpc_tools into out_dir (a temp dir by default)."""
    global _modules
    if _modules is not None:
        return _modules
    from grpc_tools import protoc
    import grpc_tools
    if out_dir is None:
        out_dir = tempfile.mkdtemp(prefix="trellis-proto-")
        atexit.register(shutil.rmtree, out_dir, True)
    os.makedirs(out_dir, exist_ok=True)
    if not os.path.exists(os.path.join(out_dir, "workload_pb2_grpc.py")):
        well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        rc = protoc.main(["grpc_tools.protoc", "-I", PROTO_DIR, "-I", well_known,
                          "--python_out", out_dir, "--grpc_python_out", out_dir,
                          os.path.join(PROTO_DIR, "workload.proto")])
        if rc != 0:
            raise RuntimeError("grpc_tools.protoc failed on workload.proto (%d)" % rc)
        # Readable by a caller running as another user.
        os.chmod(out_dir, 0o755)
        for f in os.listdir(out_dir):
            os.chmod(os.path.join(out_dir, f), 0o644)
    if out_dir not in sys.path:
        sys.path.insert(0, out_dir)
    pb2 = importlib.import_module("workload_pb2")
    pb2_grpc = importlib.import_module("workload_pb2_grpc")
    _modules = (pb2, pb2_grpc, out_dir)
    return _modules


class WorkloadClient:
    def __init__(self, socket_path):
        self.pb2, self.pb2_grpc, _ = compile_proto()
        self.channel = grpc.insecure_channel("unix:" + socket_path)
        self.stub = self.pb2_grpc.SpiffeWorkloadAPIStub(self.channel)

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def x509_stream(self, timeout=120, header=True):
        return self.stub.FetchX509SVID(self.pb2.X509SVIDRequest(), timeout=timeout,
                                       metadata=HEADER if header else None)

    def fetch_x509(self, timeout=30, header=True):
        """First FetchX509SVID message; the stream is then cancelled."""
        stream = self.x509_stream(timeout=timeout, header=header)
        try:
            return next(stream)
        finally:
            stream.cancel()

    def fetch_jwt(self, audience, spiffe_id="", timeout=30):
        return self.stub.FetchJWTSVID(
            self.pb2.JWTSVIDRequest(audience=list(audience), spiffe_id=spiffe_id),
            timeout=timeout, metadata=HEADER)

    def fetch_jwt_bundles(self, timeout=30):
        stream = self.stub.FetchJWTBundles(self.pb2.JWTBundlesRequest(), timeout=timeout,
                                           metadata=HEADER)
        try:
            return next(stream)
        finally:
            stream.cancel()

    def fetch_x509_bundles(self, timeout=30):
        stream = self.stub.FetchX509Bundles(self.pb2.X509BundlesRequest(), timeout=timeout,
                                            metadata=HEADER)
        try:
            return next(stream)
        finally:
            stream.cancel()

    def validate_jwt(self, audience, token, timeout=30):
        return self.stub.ValidateJWTSVID(
            self.pb2.ValidateJWTSVIDRequest(audience=audience, svid=token), timeout=timeout,
            metadata=HEADER)


# ---- X.509 helpers -------------------------------------------------------------------------

def split_der_certs(blob):
    """Splits concatenated DER certificates (each a SEQUENCE with a definite length)."""
    certs = []
    i = 0
    while i < len(blob):
        if blob[i] != 0x30:
            raise ValueError("not a DER SEQUENCE at offset %d" % i)
        first = blob[i + 1]
        if first < 0x80:
            length, header = first, 2
        else:
            n = first & 0x7F
            length = int.from_bytes(blob[i + 2:i + 2 + n], "big")
            header = 2 + n
        end = i + header + length
        if end > len(blob):
            raise ValueError("truncated DER certificate at offset %d" % i)
        certs.append(x509.load_der_x509_certificate(blob[i:end]))
        i = end
    return certs


def to_pem(certs):
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def verify_signed_by(cert, issuer):
    """Raises unless `cert` carries a valid signature by `issuer`'s key."""
    pub = issuer.public_key()
    if isinstance(pub, ec.EllipticCurvePublicKey):
        pub.verify(cert.signature, cert.tbs_certificate_bytes,
                   ec.ECDSA(cert.signature_hash_algorithm))
    elif isinstance(pub, rsa.RSAPublicKey):
        pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                   cert.signature_hash_algorithm)
    else:
        raise ValueError("unsupported issuer key type %r" % (pub,))


def verify_chain_to_bundle(chain, roots, now=None):
    """Checks chain[i] is signed by chain[i+1], the last by one of `roots`, all within validity,
    and every non-leaf certificate is a CA allowed to sign certificates. Returns the root."""
    now = now or datetime.datetime.utcnow()
    for c in chain + roots:
        if not (c.not_valid_before <= now <= c.not_valid_after):
            raise AssertionError("certificate %s not valid at %s" % (c.subject, now))
    for cert, issuer in zip(chain, chain[1:]):
        _check_ca(issuer)
        verify_signed_by(cert, issuer)
    for root in roots:
        if root.subject != chain[-1].issuer:
            continue
        try:
            verify_signed_by(chain[-1], root)
        except Exception:  # noqa: BLE001 - try the next root
            continue
        _check_ca(root)
        return root
    raise AssertionError("chain does not verify to any bundle root")


def _check_ca(cert):
    bc = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
    if not bc.ca:
        raise AssertionError("non-leaf certificate %s is not a CA" % cert.subject)
    ku = cert.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE).value
    if not ku.key_cert_sign:
        raise AssertionError("CA %s lacks keyCertSign" % cert.subject)


def uri_sans(cert):
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def key_matches_cert(key_der, cert):
    key = serialization.load_der_private_key(key_der, password=None)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


def openssl_verify(workdir, chain, roots):
    """Runs `openssl verify -CAfile bundle.pem [-untrusted intermediates.pem] leaf.pem`."""
    os.makedirs(workdir, exist_ok=True)
    bundle = os.path.join(workdir, "bundle.pem")
    leaf = os.path.join(workdir, "leaf.pem")
    with open(bundle, "wb") as f:
        f.write(to_pem(roots))
    with open(leaf, "wb") as f:
        f.write(to_pem(chain[:1]))
    args = ["openssl", "verify", "-CAfile", bundle]
    if len(chain) > 1:
        inter = os.path.join(workdir, "intermediates.pem")
        with open(inter, "wb") as f:
            f.write(to_pem(chain[1:]))
        args += ["-untrusted", inter]
    args.append(leaf)
    return subprocess.run(args, capture_output=True, text=True)


# ---- JWT helpers ---------------------------------------------------------------------------

def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_parts(token):
    header_b64, payload_b64, sig_b64 = token.split(".")
    return (json.loads(b64url_decode(header_b64)), json.loads(b64url_decode(payload_b64)),
            b64url_decode(sig_b64), (header_b64 + "." + payload_b64).encode())


def verify_jwt_with_jwks(token, jwks):
    """Verifies an ES256/ES384 compact JWS against a JWKS; returns the claims."""
    header, claims, sig, signing_input = jwt_parts(token)
    kid = header.get("kid")
    if not kid:
        raise AssertionError("JWT header has no kid: %r" % header)
    keys = [k for k in jwks.get("keys", []) if k.get("kid") == kid]
    if len(keys) != 1:
        raise AssertionError("kid %s found %d times in the JWKS" % (kid, len(keys)))
    jwk = keys[0]
    alg = header.get("alg")
    curves = {"ES256": (ec.SECP256R1(), hashes.SHA256(), 32),
              "ES384": (ec.SECP384R1(), hashes.SHA384(), 48)}
    if alg not in curves or jwk.get("kty") != "EC":
        raise AssertionError("unsupported alg/kty %s/%s" % (alg, jwk.get("kty")))
    curve, digest, size = curves[alg]
    x = int.from_bytes(b64url_decode(jwk["x"]), "big")
    y = int.from_bytes(b64url_decode(jwk["y"]), "big")
    pub = ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
    if len(sig) != 2 * size:
        raise AssertionError("JWS signature is %d bytes, want %d (r||s)" % (len(sig), 2 * size))
    r = int.from_bytes(sig[:size], "big")
    s = int.from_bytes(sig[size:], "big")
    pub.verify(utils.encode_dss_signature(r, s), signing_input, ec.ECDSA(digest))
    return header, claims


def _main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True)
    parser.add_argument("--proto-out", required=True)
    parser.add_argument("--enter-cgroup", action="append", default=[],
                        help="a cgroup.procs file this process moves itself into first")
    parser.add_argument("command", choices=["fetch-x509", "fetch-x509-id"])
    args = parser.parse_args()
    for procs in args.enter_cgroup:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    compile_proto(args.proto_out)
    client = WorkloadClient(args.socket)
    try:
        resp = client.fetch_x509(timeout=30)
        if args.command == "fetch-x509-id":
            print("OK " + " ".join(s.spiffe_id for s in resp.svids))
        else:
            print("OK")
    except grpc.RpcError as e:
        print(e.code().name)
        print(e.details(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
