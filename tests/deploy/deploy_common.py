"""Shared helpers of the deployment checks: repository paths, the built binaries, and a
reader for the few HCL facts the checks compare against manifests."""

import os
import re
import subprocess
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN_DIR = os.environ.get("TRELLIS_BIN_DIR", os.path.join(REPO, "build", "cmd"))


def binary(name):
    return os.path.join(BIN_DIR, name)


def validate_config(text, agent, expand_env=False, env=None, suffix=".conf"):
    """Runs `trellis-server|trellis-agent validate` on TEXT; returns (ok, message)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, ("agent" if agent else "server") + suffix)
        with open(path, "w") as f:
            f.write(text)
        cmd = [binary("trellis-agent" if agent else "trellis-server"), "validate", "-config", path]
        if expand_env:
            cmd.append("-expandEnv")
        run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        run_env.update(env or {})
        proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env, timeout=60)
        return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def strip_hcl_comments(text):
    """Drops # and // line comments outside strings (enough for the files checked here)."""
    out = []
    for line in text.splitlines():
        in_str = False
        cut = len(line)
        i = 0
        while i < len(line):
            c = line[i]
            if c == "\\" and in_str:
                i += 2
                continue
            if c == '"':
                in_str = not in_str
            elif not in_str and (c == "#" or line.startswith("//", i)):
                cut = i
                break
            i += 1
        out.append(line[:cut])
    return "\n".join(out)


def hcl_block(text, name):
    """The body of the first unlabelled top-level-or-nested block NAME { ... }, or None."""
    text = strip_hcl_comments(text)
    m = re.search(r"(^|\n)\s*" + re.escape(name) + r"\s*=?\s*\{", text)
    if not m:
        return None
    depth, i = 1, m.end()
    start = i
    while i < len(text) and depth:
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
        i += 1
    return text[start:i - 1]


def hcl_scalars(body):
    """KEY = "value" / KEY = 123 / KEY = true assignments at any depth of BODY."""
    values = {}
    for m in re.finditer(r'([A-Za-z_][\w.-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[-\w.]+)', body or ""):
        v = m.group(2)
        values.setdefault(m.group(1), v[1:-1] if v.startswith('"') else v)
    return values


def hcl_paths(text):
    """Every (key, absolute path) assignment of TEXT."""
    text = strip_hcl_comments(text)
    return [(m.group(1), m.group(2))
            for m in re.finditer(r'([A-Za-z_]\w*)\s*=\s*"(/[^"$]*)"', text)]


def health_settings(text):
    """The health listener a configuration asks for: dict or None when disabled."""
    body = hcl_block(text, "health_checks")
    if body is None:
        return None
    v = hcl_scalars(body)
    if v.get("listener_enabled") != "true":
        return None
    return {
        "bind_address": v.get("bind_address", "localhost"),
        "bind_port": int(v.get("bind_port", "80")),
        "live_path": v.get("live_path", "/live"),
        "ready_path": v.get("ready_path", "/ready"),
    }
