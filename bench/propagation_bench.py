# Bundle propagation down a three-tier tree: how long a new root JWT key takes to reach a
# workload's FetchJWTBundles stream at the third tier, against the root tier in the same run.
"""Bundle change propagation benchmark.

Starts real processes: root server + root agents, a region server next to a root agent, a
region agent, a cluster server (third tier) next to the region agent, and a cluster agent.
A workload at the root tier and one at the cluster tier each hold a FetchJWTBundles stream.
Each round runs `localauthority jwt prepare` at the root and timestamps the new key's arrival
on both streams, measured from just before the command starts; the prepared key is then
activated so that the next prepare is allowed. The command's own round trip is reported
beside the figures. Exit status 1 when the third tier's median misses the target.

Binaries: TRELLIS_SERVER_BIN / TRELLIS_AGENT_BIN (default: build/cmd/ under the repository).
"""

import json
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import grpc  # noqa: E402

import harness  # noqa: E402
import workload_client as wl  # noqa: E402
from harness import Deployment, wait_for  # noqa: E402

ROUNDS = int(os.environ.get("TRELLIS_BENCH_ROUNDS", "15"))
TARGET_MS = 1000.0
TD_ID = "spiffe://" + harness.TRUST_DOMAIN


class KidWatcher(threading.Thread):
    """Holds one FetchJWTBundles stream and records when each key ID first appears on it."""

    def __init__(self, socket_path):
        super().__init__(daemon=True)
        self.client = wl.WorkloadClient(socket_path)
        self.stream = self.client.stub.FetchJWTBundles(
            self.client.pb2.JWTBundlesRequest(), timeout=3600, metadata=wl.HEADER)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.first_seen = {}
        self.messages = 0
        self.error = None

    def run(self):
        try:
            for msg in self.stream:
                now = time.monotonic()
                kids = {k.get("kid") for k in json.loads(msg.bundles[TD_ID]).get("keys", [])}
                with self.cond:
                    self.messages += 1
                    for kid in kids:
                        self.first_seen.setdefault(kid, now)
                    self.cond.notify_all()
        except grpc.RpcError as e:
            with self.cond:
                if e.code() != grpc.StatusCode.CANCELLED:
                    self.error = e
                self.cond.notify_all()

    def wait_kid(self, kid, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while kid not in self.first_seen:
                if self.error is not None:
                    raise RuntimeError("stream ended: %r" % (self.error,))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("kid %s did not arrive in %.0f s" % (kid, timeout))
                self.cond.wait(left)
            return self.first_seen[kid]

    def close(self):
        self.stream.cancel()
        self.join(10)
        self.client.close()


def build(d):
    root = d.server("root")
    # A server takes its identity from the agent next to it and every process here shares one
    # uid, so the root-tier workload gets an agent of its own.
    root_host = d.attested_agent(root, "root-host")
    root_wl = d.attested_agent(root, "root-wl")
    region = d.downstream_server(root, root_host, "region")
    region_host = d.attested_agent(region, "region-host")
    cluster = d.downstream_server(region, region_host, "cluster")
    cluster_wl = d.attested_agent(cluster, "cluster-wl")
    for agent, path in ((root_wl, "root/workload"), (cluster_wl, "cluster/workload")):
        agent.register_workload(path)
        client = wl.WorkloadClient(agent.socket_path)
        try:
            wait_for(lambda: client.fetch_x509(timeout=10).svids, 2 * harness.DEFAULT_TIMEOUT,
                     what="an SVID at " + agent.name)
        finally:
            client.close()
    return root, root_wl, cluster_wl


def ms(seconds):
    return seconds * 1000.0


def main():
    with Deployment(prefix="trellis-bench-") as d:
        try:
            root, root_wl, cluster_wl = build(d)
        except Exception:
            sys.stderr.write(d.logs() + "\n")
            raise
        watchers = {"root": KidWatcher(root_wl.socket_path),
                    "cluster": KidWatcher(cluster_wl.socket_path)}
        for w in watchers.values():
            w.start()
        try:
            # Both streams delivered their first full state before the clock starts.
            active = root.authorities("jwt")["active"]["authority_id"]
            for w in watchers.values():
                w.wait_kid(active, harness.DEFAULT_TIMEOUT)
            lat = {"root": [], "cluster": []}
            cli = []
            for _ in range(ROUNDS):
                start = time.monotonic()
                kid = root.localauthority("jwt", "prepare")["authority_id"]
                cli.append(time.monotonic() - start)
                for name, w in watchers.items():
                    lat[name].append(w.wait_kid(kid, harness.DEFAULT_TIMEOUT) - start)
                root.localauthority("jwt", "activate", kid)
        except Exception:
            sys.stderr.write(d.logs()[-20000:] + "\n")
            raise
        finally:
            for w in watchers.values():
                w.close()

    c_med, c_max = statistics.median(lat["cluster"]), max(lat["cluster"])
    r_med, r_max = statistics.median(lat["root"]), max(lat["root"])
    cli_med = statistics.median(cli)
    print("propagation_bench: %d root JWT key changes, timed from just before "
          "`localauthority jwt prepare` starts" % ROUNDS)
    print("  CLI round trip (prepare):    median %7.1f ms  max %7.1f ms" % (
        ms(cli_med), ms(max(cli))))
    print("  root tier (floor):           median %7.1f ms  max %7.1f ms" % (ms(r_med), ms(r_max)))
    print("  third tier (cluster):        median %7.1f ms  max %7.1f ms" % (ms(c_med), ms(c_max)))
    # Negative when the key reached the stream before the command had returned.
    print("  third tier after the command returned: median %7.1f ms" % ms(
        statistics.median([c - k for c, k in zip(lat["cluster"], cli)])))
    print("  ratio third tier / root tier (medians): %.2f" % (c_med / r_med if r_med else 0.0))
    met = ms(c_med) < TARGET_MS
    print("  target: median < %.0f ms: %s" % (TARGET_MS, "met" if met else "missed"))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
