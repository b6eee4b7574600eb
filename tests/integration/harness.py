# Runs real trellis-server and trellis-agent processes in a temporary directory for end-to-end
# tests: writes their configurations, picks free ports, waits on conditions, always cleans up.
"""A reusable deployment of Trellis processes for integration tests.

Binaries come from TRELLIS_SERVER_BIN / TRELLIS_AGENT_BIN (set by CMake), falling back to
build/cmd/ under the repository root. Every wait is a condition polled up to a deadline, never
a fixed sleep, because the machine running the tests may be heavily loaded.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
import time

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TRUST_DOMAIN = "example.org"

# Generous: two cores shared with concurrent builds.
DEFAULT_TIMEOUT = float(os.environ.get("TRELLIS_IT_TIMEOUT", "60"))
# A downstream server's start-up waits for its SVID from the agent next to it and for its CA
# from the tier above (up to about a minute by design).
DOWNSTREAM_START_TIMEOUT = 2 * DEFAULT_TIMEOUT


def server_binary():
    return os.environ.get("TRELLIS_SERVER_BIN",
                          os.path.join(REPO_ROOT, "build", "cmd", "trellis-server"))


def agent_binary():
    return os.environ.get("TRELLIS_AGENT_BIN",
                          os.path.join(REPO_ROOT, "build", "cmd", "trellis-agent"))


class WaitTimeout(AssertionError):
    pass


def wait_for(condition, timeout=DEFAULT_TIMEOUT, interval=0.1, what=None):
    """Polls condition() until it returns a truthy value, which is returned.

    Exceptions raised by condition() count as "not yet"; the last one is reported on timeout.
    """
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last_error = e
        if time.monotonic() >= deadline:
            message = "timed out after %.0f s waiting for %s" % (
                timeout, what or getattr(condition, "__name__", "condition"))
            if last_error is not None:
                message += " (last error: %r)" % (last_error,)
            raise WaitTimeout(message)
        time.sleep(interval)
        interval = min(interval * 1.5, 1.0)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hcl_string(value):
    return json.dumps(str(value))


class CliResult:
    def __init__(self, args, returncode, stdout, stderr):
        self.args = args
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    @property
    def ok(self):
        return self.returncode == 0

    def json(self):
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise AssertionError("command %s printed no JSON: %r (stderr %r)" % (
                " ".join(self.args), self.stdout, self.stderr)) from None

    def check(self):
        if self.returncode != 0:
            raise AssertionError("command %s exited %d\nstdout:\n%s\nstderr:\n%s" % (
                " ".join(self.args), self.returncode, self.stdout, self.stderr))
        return self

    def __repr__(self):
        return "CliResult(%r, rc=%d, stdout=%r, stderr=%r)" % (
            self.args, self.returncode, self.stdout, self.stderr)


class Process:
    """One long-running trellis process whose output goes to a log file."""

    def __init__(self, name, args, log_path, cwd, env=None):
        self.name = name
        self.args = list(args)
        self.log_path = log_path
        self.cwd = cwd
        # Variables added to the test's environment for this process.
        self.env = dict(os.environ, **env) if env else None
        self.popen = None

    def start(self):
        if self.running():
            raise RuntimeError("%s is already running" % self.name)
        log = open(self.log_path, "ab")
        try:
            log.write(("=== start %s: %s\n" % (self.name, " ".join(self.args))).encode())
            log.flush()
            # Own session: a signal aimed at the test runner does not hit the children and we
            # can signal each child alone.
            self.popen = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=self.cwd,
                                          env=self.env, start_new_session=True)
        finally:
            log.close()
        return self

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def running(self):
        return self.popen is not None and self.popen.poll() is None

    def returncode(self):
        return None if self.popen is None else self.popen.poll()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except FileNotFoundError:
            return 0

    def log_since(self, offset):
        return self.log()[offset:] if offset else self.log()

    def stop(self, timeout=20.0):
        """SIGTERM, then SIGKILL if it does not exit in time. Returns the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.poll()

    def wait_exit(self, timeout=DEFAULT_TIMEOUT):
        """Waits for the process to exit on its own; returns its exit code."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise WaitTimeout("%s still running after %.0f s" % (self.name, timeout)) from None

    def kill(self):
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        return self.popen.poll() if self.popen else None


def health_status(port, path):
    """(HTTP status, parsed JSON body or None) of GET <path> on 127.0.0.1:<port>; (None, None)
    when nothing answers."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body) if body else None
        except ValueError:
            return e.code, None
    except (urllib.error.URLError, OSError):
        return None, None


class Server:
    def __init__(self, deployment, name, extra_attestors=None, default_x509_svid_ttl="1h",
                 ratelimit_attestation=False, trust_domain=TRUST_DOMAIN, extra_server_config="",
                 extra_plugins="", default_jwt_svid_ttl="5m", ca_ttl="24h",
                 postgres_dsn=None, health_port=None, env=None, extra_config=""):
        """extra_server_config / extra_plugins: raw HCL appended inside server {} / plugins {}
        (e.g. an UpstreamAuthority block for a nested tier). postgres_dsn: keep the datastore
        in that PostgreSQL database instead of SQLite in the data directory."""
        self.deployment = deployment
        self.name = name
        # Set for a downstream server (see Deployment.downstream_server): the tier above, the
        # agent it gets its identity from, and that identity's entry on the tier above.
        self.upstream = None
        self.parent_agent = None
        self.downstream_id = None
        self.downstream_entry_id = None
        self.trust_domain = trust_domain
        self.dir = deployment.path(name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.socket_path = os.path.join(self.dir, "api.sock")
        self.data_dir = os.path.join(self.dir, "data")
        self.config_path = os.path.join(self.dir, "server.conf")
        attestors = ['  NodeAttestor "join_token" {\n    plugin_data {}\n  }\n']
        for attestor_name, data in (extra_attestors or {}).items():
            body = "".join("      %s = %s\n" % (k, hcl_string(v)) for k, v in data.items())
            attestors.append('  NodeAttestor "%s" {\n    plugin_data {\n%s    }\n  }\n' %
                             (attestor_name, body))
        config = (
            "server {\n"
            "  bind_address = \"127.0.0.1\"\n"
            "  bind_port = \"%d\"\n"
            "  socket_path = %s\n"
            "  trust_domain = \"%s\"\n"
            "  data_dir = %s\n"
            "  log_level = \"DEBUG\"\n"
            "  ca_ttl = \"%s\"\n"
            "  default_x509_svid_ttl = \"%s\"\n"
            "  default_jwt_svid_ttl = \"%s\"\n"
            "  ratelimit {\n    attestation = %s\n    signing = false\n  }\n"
            "%s"
            "}\n\n"
            "plugins {\n"
            "  DataStore \"sql\" {\n    plugin_data {\n"
            "      database_type = \"%s\"\n"
            "      connection_string = %s\n"
            "    }\n  }\n"
            "  KeyManager \"disk\" {\n    plugin_data {\n      keys_path = %s\n    }\n  }\n"
            "%s"
            "%s"
            "}\n") % (self.port, hcl_string(self.socket_path), trust_domain,
                      hcl_string(self.data_dir), ca_ttl, default_x509_svid_ttl,
                      default_jwt_svid_ttl, "true" if ratelimit_attestation else "false",
                      extra_server_config, "postgres" if postgres_dsn else "sqlite3",
                      hcl_string(postgres_dsn or os.path.join(self.data_dir, "datastore.sqlite3")),
                      hcl_string(os.path.join(self.data_dir, "keys.json")), "".join(attestors),
                      extra_plugins)
        # health_port: serve /live and /ready on 127.0.0.1:<health_port>.
        self.health_port = health_port
        if health_port:
            config += ("\nhealth_checks {\n  listener_enabled = true\n"
                       "  bind_address = \"127.0.0.1\"\n  bind_port = \"%d\"\n}\n" % health_port)
        # extra_config: raw top-level HCL appended to the file (e.g. oidc_discovery { }).
        config += extra_config
        with open(self.config_path, "w") as f:
            f.write(config)
        self.process = Process(name, [server_binary(), "run", "-config", self.config_path],
                               os.path.join(self.dir, "server.log"), self.dir, env=env)

    def start(self, wait=True, timeout=DEFAULT_TIMEOUT):
        self.process.start()
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout=DEFAULT_TIMEOUT):
        def healthy():
            if not self.process.running():
                raise AssertionError("%s exited with %s\n%s" % (
                    self.name, self.process.returncode(), self.process.log()[-4000:]))
            return self.cli("healthcheck").ok
        wait_for(healthy, timeout, what="%s to be healthy" % self.name)

    def health(self, path):
        """HTTP status of GET <path> on the health listener (None when it does not answer)."""
        return health_status(self.health_port, path)[0]

    def health_report(self, path):
        """(HTTP status, JSON body) of GET <path> on the health listener."""
        return health_status(self.health_port, path)

    def stop(self):
        return self.process.stop()

    def kill(self):
        return self.process.kill()

    def cli(self, *args, check=False, timeout=60):
        """trellis-server <args> -socketPath <this server's admin socket>."""
        argv = [server_binary()] + list(args) + ["-socketPath", self.socket_path]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
        result = CliResult(argv, out.returncode, out.stdout, out.stderr)
        return result.check() if check else result

    # Conveniences over the CLI's documented output shapes.

    def generate_token(self, ttl=600):
        out = self.cli("token", "generate", "-ttl", str(ttl), check=True).stdout
        m = re.search(r"^Token:\s*(\S+)", out, re.M)
        if not m:
            raise AssertionError("no 'Token: <t>' in output: %r" % out)
        return m.group(1)

    def bundle_pem(self):
        pem = self.cli("bundle", "show", "-format", "pem", check=True).stdout
        if "BEGIN CERTIFICATE" not in pem:
            raise AssertionError("bundle show printed no certificate: %r" % pem)
        return pem

    def create_entry(self, parent_id, spiffe_id, selectors, *extra):
        args = ["entry", "create", "-parentID", parent_id, "-spiffeID", spiffe_id]
        for s in selectors:
            args += ["-selector", s]
        out = self.cli(*(args + list(extra)), check=True).stdout
        m = re.search(r"^Entry ID\s*:\s*(\S+)", out, re.M)
        if not m:
            raise AssertionError("no 'Entry ID' in entry create output: %r" % out)
        return m.group(1)

    def delete_entry(self, entry_id):
        return self.cli("entry", "delete", "-entryID", entry_id, check=True)

    def register_workload(self, agent, path, *extra, selectors=None):
        """An entry for this test process (its uid) under `agent`; returns (entry ID, SPIFFE ID).

        Every process of a deployment shares one uid, so the parent agent is what scopes an
        identity: give each workload an agent that hosts no downstream server."""
        sid = spiffe_id(path, self.trust_domain)
        entry_id = self.create_entry(agent.spiffe_id, sid, selectors or [uid_selector()], *extra)
        return entry_id, sid

    def localauthority(self, kind, action, authority_id=None, check=True):
        """`localauthority <x509|jwt> <action> [-authorityID ID] -output json`.

        Returns the printed JSON (the authority object, or for `show` the
        {"active", "prepared", "old"} document); with check=False the CliResult instead."""
        args = ["localauthority", kind, action]
        if authority_id is not None:
            args += ["-authorityID", authority_id]
        result = self.cli(*(args + ["-output", "json"]))
        if not check:
            return result
        return result.check().json()

    def authorities(self, kind):
        """`localauthority <kind> show -output json` as a dict."""
        return self.localauthority(kind, "show")

    def bundle_spiffe(self):
        """`bundle show -format spiffe` as a dict (a JWK set with x509-svid and jwt-svid keys)."""
        return json.loads(self.cli("bundle", "show", "-format", "spiffe", check=True).stdout)

    def agents(self):
        out = self.cli("agent", "list", "-output", "json", check=True).stdout
        return _agents_from_json(out)

    def agent(self, spiffe_id):
        out = self.cli("agent", "show", "-spiffeID", spiffe_id, "-output", "json",
                       check=True).stdout
        agents = _agents_from_json(out)
        if len(agents) != 1:
            raise AssertionError("agent show printed %d agents: %r" % (len(agents), out))
        return agents[0]


def _agents_from_json(text):
    """Accepts a list, {"agents": [...]}, or a single agent object."""
    data = json.loads(text) if text.strip() else []
    if isinstance(data, dict):
        if "agents" in data:
            data = data["agents"] or []
        else:
            data = [data]
    return data


def agent_field(agent, *names):
    """Reads a field from `agent show/list -output json` whatever its casing."""
    for n in names:
        for key in (n, _camel(n)):
            if key in agent:
                return agent[key]
    return None


def _camel(name):
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


class Agent:
    def __init__(self, deployment, name, server, node_attestor="join_token",
                 attestor_data=None, bundle_path=None, discover_workload_path=False,
                 also_servers=(), connection_max_age=None, extra_plugins="",
                 attestor_block=None, health_port=None, extra_config=""):
        """extra_plugins: raw HCL appended inside plugins {} (e.g. more WorkloadAttestors).
        attestor_block: raw HCL for the NodeAttestor's plugin_data body, for nested values.
        extra_config: raw top-level HCL appended to the file (e.g. telemetry { })."""
        self.deployment = deployment
        self.name = name
        self.server = server
        self.trust_domain = server.trust_domain
        self.dir = deployment.path(name)
        os.makedirs(self.dir, exist_ok=True)
        self.data_dir = os.path.join(self.dir, "data")
        # The Workload API socket lives in a world-traversable directory so that callers
        # running as other users can reach it (the agent identifies them, not the file mode).
        self.socket_path = os.path.join(deployment.public_dir, name + ".sock")
        self.config_path = os.path.join(self.dir, "agent.conf")
        if bundle_path is None:
            bundle_path = os.path.join(self.dir, "bootstrap.pem")
            with open(bundle_path, "w") as f:
                f.write(server.bundle_pem())
        self.bundle_path = bundle_path
        body = "".join("      %s = %s\n" % (k, hcl_string(v))
                       for k, v in (attestor_data or {}).items()) + (attestor_block or "")
        # Replicas of the same tier the agent may also use, each "127.0.0.1:<port>".
        addresses = ",".join(["127.0.0.1"] + ["127.0.0.1:%d" % o.port for o in also_servers])
        extra = ("  server_connection_max_age = \"%s\"\n" % connection_max_age
                 if connection_max_age else "")
        config = (
            "agent {\n"
            "  trust_domain = \"%s\"\n"
            "  server_address = \"" + addresses + "\"\n" + extra +
            "  server_port = \"%d\"\n"
            "  data_dir = %s\n"
            "  socket_path = %s\n"
            "  trust_bundle_path = %s\n"
            "  log_level = \"DEBUG\"\n"
            "}\n\n"
            "plugins {\n"
            "  NodeAttestor \"%s\" {\n    plugin_data {\n%s    }\n  }\n"
            "  KeyManager \"disk\" {\n    plugin_data {\n      directory = %s\n    }\n  }\n"
            "  WorkloadAttestor \"unix\" {\n    plugin_data {\n"
            "      discover_workload_path = %s\n    }\n  }\n"
            "%s"
            "}\n") % (server.trust_domain, server.port, hcl_string(self.data_dir),
                      hcl_string(self.socket_path), hcl_string(bundle_path), node_attestor, body,
                      hcl_string(self.data_dir), "true" if discover_workload_path else "false",
                      extra_plugins)
        # health_port: serve /live and /ready on 127.0.0.1:<health_port>.
        self.health_port = health_port
        if health_port:
            config += ("\nhealth_checks {\n  listener_enabled = true\n"
                       "  bind_address = \"127.0.0.1\"\n  bind_port = \"%d\"\n}\n" % health_port)
        config += extra_config
        with open(self.config_path, "w") as f:
            f.write(config)
        self.process = None
        self.log_path = os.path.join(self.dir, "agent.log")
        # Known once it attests with a join token (the ID is derived from the token).
        self.spiffe_id = None

    def start(self, join_token=None, wait=True):
        args = [agent_binary(), "run", "-config", self.config_path]
        if join_token:
            args += ["-joinToken", join_token]
            if self.spiffe_id is None:
                self.spiffe_id = agent_id_for_token(join_token, self.trust_domain)
        self.process = Process(self.name, args, self.log_path, self.dir)
        self.process.start()
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout=DEFAULT_TIMEOUT):
        def healthy():
            if not self.process.running():
                raise AssertionError("%s exited with %s\n%s" % (
                    self.name, self.process.returncode(), self.process.log()[-4000:]))
            return self.cli("healthcheck").ok
        wait_for(healthy, timeout, what="%s to be healthy" % self.name)

    def stop(self):
        return self.process.stop() if self.process else None

    def kill(self):
        return self.process.kill() if self.process else None

    def cli(self, *args, check=False, timeout=60):
        """trellis-agent <args> -socketPath <this agent's Workload API socket>."""
        argv = [agent_binary()] + list(args) + ["-socketPath", self.socket_path]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
        result = CliResult(argv, out.returncode, out.stdout, out.stderr)
        return result.check() if check else result

    def log(self):
        return self.process.log() if self.process else ""

    @property
    def endpoint(self):
        return "unix:" + self.socket_path

    def health_report(self, path):
        """(HTTP status, JSON body) of GET <path> on the agent's health listener."""
        return health_status(self.health_port, path)

    def register_workload(self, path, *extra, selectors=None):
        """An entry for this test process under this agent, on the agent's own server."""
        return self.server.register_workload(self, path, *extra, selectors=selectors)


class Deployment:
    """A temporary directory holding any number of servers and agents.

    Use as a context manager, or call close(): every process is stopped (SIGTERM, then SIGKILL)
    and the directory removed unless TRELLIS_IT_KEEP is set.
    """

    def __init__(self, prefix="trellis-it-"):
        # Short path under /tmp: Unix socket paths are limited to 108 bytes.
        self.root = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        # Traversable by other users so a caller running as `nobody` reaches the agent socket.
        os.chmod(self.root, 0o755)
        self.public_dir = os.path.join(self.root, "public")
        os.makedirs(self.public_dir)
        os.chmod(self.public_dir, 0o755)
        self.servers = []
        self.agents = []
        self._closed = False

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def server(self, name="server", start=True, **kwargs):
        s = Server(self, name, **kwargs)
        self.servers.append(s)
        if start:
            s.start()
        return s

    def agent(self, server, name=None, join_token=None, start=True, wait=True, **kwargs):
        name = name or "agent%d" % (len(self.agents) + 1)
        a = Agent(self, name, server, **kwargs)
        self.agents.append(a)
        if start:
            a.start(join_token=join_token, wait=wait)
        return a

    def attested_agent(self, server, name=None, **kwargs):
        """An agent attested to `server` (any tier) with a fresh join token; its SPIFFE ID is
        in .spiffe_id."""
        return self.agent(server, name=name, join_token=server.generate_token(), **kwargs)

    def downstream_server(self, upstream, parent_agent, name, downstream=True, start=True,
                          timeout=None, extra_plugins="", **kwargs):
        """A server one tier below `upstream`, running next to `parent_agent` (an agent of
        `upstream`'s tier that hosts nothing else).

        Registers spiffe://<td>/<name>/server on `upstream` under `parent_agent` (with
        -downstream unless downstream=False) and configures UpstreamAuthority "spire" to fetch
        its identity from that agent's socket and reach `upstream`'s port. Start-up blocks until
        the upstream has minted the new server's CA, so the wait is longer than usual."""
        if parent_agent.spiffe_id is None:
            raise ValueError("agent %s has no known SPIFFE ID" % parent_agent.name)
        sid = spiffe_id(name + "/server", upstream.trust_domain)
        entry_args = ["-downstream"] if downstream else []
        entry_id = upstream.create_entry(parent_agent.spiffe_id, sid, [uid_selector()],
                                         *entry_args)
        block = (
            "  UpstreamAuthority \"spire\" {\n    plugin_data {\n"
            "      server_address = \"127.0.0.1\"\n"
            "      server_port = \"%d\"\n"
            "      workload_api_socket = %s\n"
            "    }\n  }\n") % (upstream.port, hcl_string(parent_agent.socket_path))
        s = Server(self, name, trust_domain=upstream.trust_domain,
                   extra_plugins=block + extra_plugins, **kwargs)
        s.upstream = upstream
        s.parent_agent = parent_agent
        s.downstream_id = sid
        s.downstream_entry_id = entry_id
        self.servers.append(s)
        if start:
            s.start(timeout=timeout or DOWNSTREAM_START_TIMEOUT)
        return s

    def cli(self, *args, **kwargs):
        """trellis-server CLI against the first server."""
        return self.servers[0].cli(*args, **kwargs)

    wait_for = staticmethod(wait_for)

    def logs(self):
        parts = []
        for p in self.servers + self.agents:
            proc = p.process
            if proc is not None:
                parts.append("----- %s (%s) -----\n%s" % (p.name, proc.log_path,
                                                           proc.log()[-6000:]))
        return "\n".join(parts)

    def close(self):
        if self._closed:
            return
        self._closed = True
        # Agents first so they do not spend the teardown retrying a vanished server.
        for a in self.agents:
            try:
                a.stop()
            except Exception:  # noqa: BLE001 - keep tearing down
                a.kill()
        for s in self.servers:
            try:
                s.stop()
            except Exception:  # noqa: BLE001
                s.kill()
        if not os.environ.get("TRELLIS_IT_KEEP"):
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def agent_id_for_token(token, trust_domain=TRUST_DOMAIN):
    return "spiffe://%s/spire/agent/join_token/%s" % (trust_domain, token)


def uid_selector(uid=None):
    return "unix:uid:%d" % (os.getuid() if uid is None else uid)


def spiffe_id(path, trust_domain=TRUST_DOMAIN):
    return "spiffe://%s/%s" % (trust_domain, path.lstrip("/"))
