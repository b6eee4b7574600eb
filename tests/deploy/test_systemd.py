"""Checks of examples/systemd: `systemd-analyze verify` accepts both units without a single
warning (in a scratch root holding the built binaries at the units' ExecStart paths, so it
runs without systemd as PID 1), the sandbox and state-directory options are set, and the
configuration files the units name are valid and write only where the sandbox allows."""

import configparser
import os
import shutil
import subprocess
import tempfile
import unittest

import deploy_common as dc

SYSTEMD_DIR = os.path.join(dc.REPO, "examples", "systemd")
UNITS = {"trellis-server.service": ("trellis-server", "server.conf"),
         "trellis-agent.service": ("trellis-agent", "agent.conf")}
# Units this host's systemd ships, which verify loads for default dependencies.
SYSTEM_UNIT_DIRS = ("/lib/systemd/system", "/usr/lib/systemd/system")

HARDENING = {
    "NoNewPrivileges": "true", "ProtectSystem": "strict", "ProtectHome": "true",
    "PrivateTmp": "true", "PrivateDevices": "true", "ProtectKernelTunables": "true",
    "ProtectKernelModules": "true", "ProtectControlGroups": "true",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "LockPersonality": "true",
    "MemoryDenyWriteExecute": "true", "RestrictRealtime": "true", "RestrictSUIDSGID": "true",
    "SystemCallArchitectures": "native", "User": "trellis", "Group": "trellis",
    "Restart": "on-failure", "Type": "simple",
}


def read_unit(name):
    parser = configparser.ConfigParser(strict=True, interpolation=None,
                                       delimiters=("=",), comment_prefixes=("#", ";"))
    parser.optionxform = str
    with open(os.path.join(SYSTEMD_DIR, name)) as f:
        parser.read_file(f)
    return parser


def link_or_copy(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class SystemdUnitsTest(unittest.TestCase):

    def verify(self, units_dir):
        """systemd-analyze verify of every unit in UNITS_DIR, in a scratch root."""
        with tempfile.TemporaryDirectory() as root:
            system_dir = next((d for d in SYSTEM_UNIT_DIRS if os.path.isdir(d)), None)
            self.assertIsNotNone(system_dir, "systemd's units are not installed")
            shutil.copytree(system_dir, os.path.join(root, "lib/systemd/system"),
                            symlinks=True)
            os.makedirs(os.path.join(root, "etc/systemd/system"))
            for unit, (binary, _) in UNITS.items():
                service = read_unit(unit)["Service"]
                exe = service["ExecStart"].split()[0]
                link_or_copy(dc.binary(binary), os.path.join(root, exe.lstrip("/")))
                shutil.copy(os.path.join(units_dir, unit),
                            os.path.join(root, "etc/systemd/system", unit))
            proc = subprocess.run(
                ["systemd-analyze", "verify", "--man=no", "--generators=no", f"--root={root}"]
                + [f"/etc/systemd/system/{u}" for u in UNITS],
                capture_output=True, text=True, timeout=120)
            return proc

    def test_systemd_analyze_verify_accepts_both_units_without_warnings(self):
        proc = self.verify(SYSTEMD_DIR)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        # verify reports a bad value or an unknown option as a warning and still exits 0.
        self.assertEqual(proc.stderr.strip(), "")

    def test_verify_catches_a_broken_unit(self):
        # The check above can fail: a misspelt option is reported.
        with tempfile.TemporaryDirectory() as tmp:
            for unit in UNITS:
                shutil.copy(os.path.join(SYSTEMD_DIR, unit), tmp)
            path = os.path.join(tmp, "trellis-server.service")
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write(text.replace("ProtectSystem=strict", "ProtectSystem=stricter"))
            proc = self.verify(tmp)
            self.assertIn("stricter", proc.stderr)

    def test_hardening_options_are_set(self):
        for unit in UNITS:
            service = read_unit(unit)["Service"]
            for key, value in HARDENING.items():
                self.assertEqual(service.get(key), value, f"{unit}: {key}")
            # No capability unless a drop-in grants one.
            self.assertEqual(service.get("CapabilityBoundingSet"), "", unit)
            self.assertEqual(service.get("AmbientCapabilities"), "", unit)
            self.assertNotIn("ExecReload", service, f"{unit}: the binaries have no reload")
            # The agent must see other users' processes in /proc.
            if unit == "trellis-agent.service":
                for key in ("ProtectProc", "ProcSubset", "PrivateUsers"):
                    self.assertNotIn(key, service, unit)

    def test_state_is_private_and_sockets_are_under_run_trellis(self):
        for unit, (_, conf) in UNITS.items():
            service = read_unit(unit)["Service"]
            kind = "server" if "server" in unit else "agent"
            self.assertEqual(service["StateDirectory"], f"trellis/{kind}")
            self.assertEqual(service["StateDirectoryMode"], "0700")
            self.assertEqual(service["RuntimeDirectory"], f"trellis/{kind}")
            with open(os.path.join(SYSTEMD_DIR, conf)) as f:
                text = f.read()
            paths = dict(dc.hcl_paths(text))
            self.assertEqual(os.path.dirname(paths["socket_path"]), f"/run/trellis/{kind}")
            self.assertEqual(paths["data_dir"], f"/var/lib/trellis/{kind}")
            # Under ProtectSystem=strict only the state and runtime directories are writable.
            writable = (f"/var/lib/trellis/{kind}/", f"/run/trellis/{kind}/")
            for key in ("data_dir", "socket_path", "keys_path", "directory",
                        "connection_string"):
                if key in paths:
                    self.assertTrue((paths[key] + "/").startswith(writable), f"{conf}: {key}")

    def test_exec_start_runs_the_configuration_beside_the_units(self):
        for unit, (binary, conf) in UNITS.items():
            service = read_unit(unit)["Service"]
            self.assertEqual(service["ExecStart"],
                             f"/usr/local/bin/{binary} run -config /etc/trellis/{conf}")
            with open(os.path.join(SYSTEMD_DIR, conf)) as f:
                ok, msg = dc.validate_config(f.read(), agent=(binary == "trellis-agent"))
            self.assertTrue(ok, f"{conf}: {msg}")

    def test_sysusers_declares_the_units_user(self):
        with open(os.path.join(SYSTEMD_DIR, "trellis.sysusers")) as f:
            lines = [l.split() for l in f if l.strip() and not l.startswith("#")]
        self.assertEqual(len(lines), 1)
        self.assertEqual(lines[0][:2], ["u", "trellis"])
        # systemd-sysusers parses it as it would at boot, writing nothing (--dry-run).
        with tempfile.TemporaryDirectory() as root:
            proc = subprocess.run(
                ["systemd-sysusers", f"--root={root}", "--dry-run",
                 os.path.join(SYSTEMD_DIR, "trellis.sysusers")],
                capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("Creating user 'trellis'", proc.stderr + proc.stdout)


if __name__ == "__main__":
    unittest.main()
