"""Checks of docker/: the Dockerfiles against hadolint-style rules (no hadolint is packaged
for Debian 12 or npm), their runtime package lists against the libraries the built binaries
link (ldd, then dpkg -S), and compose.yaml: it parses, builds what exists, declares every
volume and network it uses, depends on services that exist, and wires the tiers as the
configurations it mounts say (each passing `validate`)."""

import json
import os
import re
import shlex
import subprocess
import unittest

import yaml

import deploy_common as dc

DOCKER_DIR = os.path.join(dc.REPO, "docker")
DOCKERFILES = {"server.Dockerfile": ["trellis-server", "trellis-datastore-postgres.so"],
               "agent.Dockerfile": ["trellis-agent"]}
# In every debian:12-slim image already (Essential or required by apt itself).
BASE_PACKAGES = {"libc6", "libstdc++6", "libgcc-s1"}
# Installed for something other than a linked library (HTTPS trust anchors).
NON_LIBRARY_PACKAGES = {"ca-certificates"}


def parse_dockerfile(path):
    """[(instruction, argument text)], continuation lines joined, comments dropped."""
    instructions, current = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not current and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if current and line.lstrip().startswith("#"):
                continue
            if line.endswith("\\"):
                current += line[:-1] + " "
                continue
            current += line
            word, _, rest = current.strip().partition(" ")
            instructions.append((word.upper(), rest.strip()))
            current = ""
    return instructions


def stages(instructions):
    """[{'image', 'name', 'body': [(instr, args)]}] per FROM."""
    out = []
    for instr, args in instructions:
        if instr == "FROM":
            parts = args.split()
            parts = [p for p in parts if not p.startswith("--platform")]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            out.append({"image": parts[0], "name": name, "body": []})
        else:
            out[-1]["body"].append((instr, args))
    return out


def exec_form(args):
    try:
        value = json.loads(args)
    except ValueError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def linked_packages(binary):
    """Debian packages of the libraries BINARY needs directly (NEEDED entries)."""
    objdump = subprocess.run(["objdump", "-p", binary], capture_output=True, text=True,
                             check=True).stdout
    needed = re.findall(r"^\s*NEEDED\s+(\S+)", objdump, re.M)
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
    # The dynamic loader is listed by its absolute path, without "=>".
    for path in re.findall(r"^\s*(/\S+/(ld-linux[^\s/]*))\s", ldd, re.M):
        resolved.setdefault(path[1], path[0])
    packages = set()
    for lib in needed:
        path = resolved.get(lib)
        if path is None:
            raise AssertionError(f"{binary}: {lib} does not resolve")
        for candidate in (path, os.path.realpath(path)):
            proc = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if proc.returncode == 0:
                packages.add(proc.stdout.split(":")[0])
                break
        else:
            raise AssertionError(f"{binary}: no Debian package owns {path}")
    return packages


def apt_packages(run_args):
    """Package names after `apt-get install` in one RUN."""
    m = re.search(r"apt-get\s+install\s+(.*?)(&&|;|$)", run_args)
    return {w for w in shlex.split(m.group(1)) if not w.startswith("-")} if m else set()


class DockerfilesTest(unittest.TestCase):

    def each_stage(self):
        for name in DOCKERFILES:
            yield name, stages(parse_dockerfile(os.path.join(DOCKER_DIR, name)))

    def test_base_images_are_pinned_debian_12_and_never_latest(self):
        for name, st in self.each_stage():
            self.assertGreaterEqual(len(st), 2, f"{name}: not multi-stage")
            for s in st:
                image = s["image"]
                if image in [x["name"] for x in st]:
                    continue  # FROM an earlier stage
                self.assertIn(":", image, f"{name}: {image} has no tag")
                repo, tag = image.split("@")[0].rsplit(":", 1)
                self.assertNotEqual(tag, "latest", name)
                self.assertEqual(repo, "debian", name)
            self.assertEqual(st[0]["image"], "debian:12", name)
            self.assertEqual(st[-1]["image"], "debian:12-slim", name)

    def test_final_stage_runs_as_a_non_root_user(self):
        for name, st in self.each_stage():
            users = [a for i, a in st[-1]["body"] if i == "USER"]
            self.assertTrue(users, f"{name}: no USER in the final stage")
            self.assertNotIn(users[-1].split(":")[0], ("root", "0"), name)
            # The user is created with the fixed uid the manifests run as.
            runs = " ".join(a for i, a in st[-1]["body"] if i == "RUN")
            self.assertRegex(runs, r"useradd\b.*--uid 10001\b.*\b" + re.escape(users[-1]))

    def test_apt_installs_skip_recommends_and_clean_lists_in_the_same_run(self):
        for name, st in self.each_stage():
            for s in st:
                for instr, args in s["body"]:
                    if instr != "RUN":
                        continue
                    self.assertNotIn("sudo", args.split(), name)
                    self.assertNotRegex(args, r"(^|&&|;)\s*cd\s", f"{name}: use WORKDIR")
                    if re.search(r"apt-get\s+install", args):
                        self.assertIn("--no-install-recommends", args, name)
                        self.assertRegex(args, r"\s-y\b|--yes", name)
                        self.assertRegex(args, r"apt-get\s+update", name)
                        self.assertIn("rm -rf /var/lib/apt/lists/*", args, name)
                    if "install-deps.sh" in args:
                        self.assertIn("rm -rf /var/lib/apt/lists/*", args, name)
                    self.assertNotRegex(args, r"apt-get\s+upgrade|dist-upgrade", name)

    def test_copy_from_names_an_earlier_stage_and_nothing_is_added_from_urls(self):
        for name, st in self.each_stage():
            seen = []
            for s in st:
                for instr, args in s["body"]:
                    self.assertNotEqual(instr, "ADD", f"{name}: use COPY ({args})")
                    m = re.match(r"--from=(\S+)", args)
                    if instr == "COPY" and m:
                        self.assertIn(m.group(1), seen, f"{name}: COPY --from={m.group(1)}")
                if s["name"]:
                    seen.append(s["name"])

    def test_build_stage_uses_install_deps_and_builds_only_the_needed_targets(self):
        for name, st in self.each_stage():
            runs = [a for i, a in st[0]["body"] if i == "RUN"]
            self.assertTrue(any("bash scripts/install-deps.sh" in r for r in runs), name)
            build = next(r for r in runs if "cmake --build" in r)
            self.assertIn("-G Ninja", build)
            targets = re.search(r"--target\s+((?:[\w.-]+\s*)+?)(&&|$)", build).group(1).split()
            wanted = [t[:-3] if t.endswith(".so") else t for t in DOCKERFILES[name]]
            self.assertEqual(sorted(targets), sorted(wanted), name)
            self.assertIn("-DTRELLIS_BUILD_TESTS=OFF", build)

    def test_exec_form_entrypoint_cmd_and_healthcheck_on_the_binary(self):
        for name, st in self.each_stage():
            body = dict((i, a) for i, a in st[-1]["body"])
            binary = DOCKERFILES[name][0]
            entry = exec_form(body["ENTRYPOINT"])
            self.assertEqual(entry, [f"/usr/local/bin/{binary}"], name)
            self.assertIsNotNone(exec_form(body["CMD"]), name)
            check = re.search(r"CMD\s+(\[.*\])", body["HEALTHCHECK"]).group(1)
            self.assertEqual(exec_form(check)[:2], [f"/usr/local/bin/{binary}", "healthcheck"])
            self.assertTrue(body.get("EXPOSE"), name)

    def test_runtime_packages_are_exactly_what_the_binaries_link(self):
        for name, st in self.each_stage():
            listed = set()
            for instr, args in st[-1]["body"]:
                if instr == "RUN":
                    listed |= apt_packages(args)
            needed = set()
            for b in DOCKERFILES[name]:
                needed |= linked_packages(dc.binary(b))
            needed -= BASE_PACKAGES
            self.assertEqual(sorted(needed - listed), [], f"{name}: missing runtime packages")
            self.assertEqual(sorted(listed - needed - NON_LIBRARY_PACKAGES), [],
                             f"{name}: packages no binary links")

    def test_dockerignore_keeps_build_trees_and_git_out(self):
        with open(os.path.join(dc.REPO, ".dockerignore")) as f:
            patterns = {l.strip() for l in f if l.strip() and not l.startswith("#")}
        for p in ("build", ".git"):
            self.assertIn(p, patterns)

    def test_helper_scripts_are_valid_posix_shell(self):
        for script in ("bootstrap.sh", "agent-entrypoint.sh"):
            path = os.path.join(DOCKER_DIR, script)
            proc = subprocess.run(["sh", "-n", path], capture_output=True, text=True)
            self.assertEqual(proc.returncode, 0, proc.stderr)


class ComposeTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        with open(os.path.join(DOCKER_DIR, "compose.yaml")) as f:
            cls.compose = yaml.safe_load(f)
        cls.services = cls.compose["services"]

    def mounts(self, svc):
        """[(source, target, read_only)] of a service's short-syntax volumes."""
        out = []
        for v in self.services[svc].get("volumes", []):
            self.assertIsInstance(v, str, f"{svc}: use the short volume syntax")
            parts = v.split(":")
            out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
        return out

    def config_of(self, svc):
        """(text, is_agent) of the configuration a service's command reads, or None."""
        cmd = self.services[svc].get("command", [])
        path = next((c for c in cmd if c.startswith("/etc/trellis/")), None)
        if path is None:
            return None
        for source, target, _ in self.mounts(svc):
            if target == path:
                with open(os.path.join(DOCKER_DIR, source)) as f:
                    return f.read(), self.services[svc]["image"].startswith("trellis/agent")
        self.fail(f"{svc}: {path} is not mounted")

    def test_every_service_has_an_image_built_from_an_existing_dockerfile(self):
        self.assertEqual(set(self.services), {"root", "root-bootstrap", "root-agent", "regional",
                                              "regional-bootstrap", "workload-agent"})
        for name, svc in self.services.items():
            self.assertIn(svc.get("image"), ("trellis/server:latest", "trellis/agent:latest"))
            build = svc["build"]
            context = os.path.normpath(os.path.join(DOCKER_DIR, build["context"]))
            dockerfile = os.path.join(context, build["dockerfile"])
            self.assertTrue(os.path.isfile(dockerfile), f"{name}: {dockerfile}")
            kind = "server" if "server" in svc["image"] else "agent"
            self.assertEqual(os.path.basename(dockerfile), f"{kind}.Dockerfile", name)

    def test_volumes_networks_and_bind_sources_are_declared(self):
        declared_volumes = set(self.compose.get("volumes") or {})
        declared_networks = set(self.compose.get("networks") or {})
        used = set()
        for name, svc in self.services.items():
            for source, target, _ in self.mounts(name):
                self.assertTrue(target.startswith("/"), name)
                if source.startswith((".", "/")):
                    self.assertTrue(os.path.exists(os.path.join(DOCKER_DIR, source)),
                                    f"{name}: {source}")
                else:
                    self.assertIn(source, declared_volumes, name)
                    used.add(source)
            for net in svc.get("networks", []):
                self.assertIn(net, declared_networks, name)
        self.assertEqual(used, declared_volumes, "a declared volume is unused")

    def test_depends_on_names_existing_services_with_valid_conditions(self):
        conditions = {"service_started", "service_healthy", "service_completed_successfully"}
        for name, svc in self.services.items():
            for dep, how in (svc.get("depends_on") or {}).items():
                self.assertIn(dep, self.services, name)
                self.assertIn(how["condition"], conditions, name)
                if how["condition"] == "service_completed_successfully":
                    self.assertEqual(self.services[dep].get("restart"), "no", dep)
            pid = svc.get("pid")
            if pid is not None and pid.startswith("service:"):
                self.assertIn(pid.split(":", 1)[1], svc.get("depends_on", {}), name)

    def test_long_running_services_are_locked_down(self):
        for name, svc in self.services.items():
            self.assertEqual(svc.get("cap_drop"), ["ALL"], name)
            self.assertIn("no-new-privileges:true", svc.get("security_opt", []), name)
            if svc.get("restart") != "no":
                self.assertIs(svc.get("read_only"), True, name)
                self.assertNotIn("user", svc, f"{name}: runs as the image's user")

    def test_mounted_configurations_are_valid(self):
        checked = 0
        for name in self.services:
            cfg = self.config_of(name)
            if cfg is None:
                continue
            ok, msg = dc.validate_config(cfg[0], cfg[1])
            self.assertTrue(ok, f"{name}: {msg}")
            checked += 1
        self.assertEqual(checked, 4)

    def test_tiers_are_wired_as_in_examples_nested(self):
        def volume_holding(svc, path):
            best = None
            for source, target, _ in self.mounts(svc):
                if path.startswith(target.rstrip("/") + "/"):
                    best = source
            self.assertIsNotNone(best, f"{svc}: {path} is on no volume")
            return best

        regional, _ = self.config_of("regional")
        upstream = dc.hcl_scalars(dc.hcl_block(regional, 'UpstreamAuthority "spire"'))
        root_agent, _ = self.config_of("root-agent")
        agent_paths = dict(dc.hcl_paths(root_agent))
        # The regional server reads the root-tier agent's socket from the same volume, and
        # lives in its pid namespace.
        self.assertEqual(volume_holding("regional", upstream["workload_api_socket"]),
                         volume_holding("root-agent", agent_paths["socket_path"]))
        self.assertEqual(self.services["regional"]["pid"], "service:root-agent")
        self.assertEqual(upstream["server_address"], "root")
        self.assertEqual(dc.hcl_scalars(dc.hcl_block(root_agent, "agent"))["server_address"],
                         "root")
        workload_agent, _ = self.config_of("workload-agent")
        self.assertEqual(dc.hcl_scalars(dc.hcl_block(workload_agent, "agent"))["server_address"],
                         "regional")
        # Bundles and tokens come from the bootstrap volume that bootstrap.sh fills.
        with open(os.path.join(DOCKER_DIR, "bootstrap.sh")) as f:
            script = f.read()
        for agent in ("root-agent", "workload-agent"):
            text, _ = self.config_of(agent)
            bundle = dict(dc.hcl_paths(text))["trust_bundle_path"]
            self.assertEqual(volume_holding(agent, bundle), "bootstrap")
            self.assertIn(f"publish {os.path.basename(bundle)}", script)
            token_file = self.services[agent]["command"][0]
            self.assertEqual(volume_holding(agent, token_file), "bootstrap")
            self.assertIn(f"publish {os.path.basename(token_file)}", script)
        # The image health checks use the sockets the configurations set.
        for svc, dockerfile in (("root", "server.Dockerfile"), ("regional", "server.Dockerfile"),
                                ("root-agent", "agent.Dockerfile"),
                                ("workload-agent", "agent.Dockerfile")):
            body = dict(stages(parse_dockerfile(os.path.join(DOCKER_DIR, dockerfile)))[-1]["body"])
            check = exec_form(re.search(r"CMD\s+(\[.*\])", body["HEALTHCHECK"]).group(1))
            text, _ = self.config_of(svc)
            self.assertEqual(check[check.index("-socketPath") + 1],
                             dict(dc.hcl_paths(text))["socket_path"], svc)


if __name__ == "__main__":
    unittest.main()
