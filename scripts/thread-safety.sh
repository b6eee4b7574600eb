#!/usr/bin/env bash
# Clang's thread-safety analysis over every source that annotates its locks: a lock taken in
# the wrong place or guarded state touched without it fails the run. Reads the compile
# commands of an existing build (default build/) and only parses, so it costs no object files.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
exec /usr/bin/python3 - "$root" "$build" <<'PY'
import json, os, shlex, subprocess, sys
from concurrent.futures import ThreadPoolExecutor

root, build = sys.argv[1], sys.argv[2]
commands = json.load(open(os.path.join(build, "compile_commands.json")))
marks = ("ABSL_GUARDED_BY", "ABSL_EXCLUSIVE_LOCKS_REQUIRED", "absl::MutexLock", "absl::Mutex ")

def annotated(path):
    with open(path, errors="replace") as f:
        text = f.read()
    if any(m in text for m in marks):
        return True
    header = os.path.splitext(path)[0] + ".h"
    if os.path.exists(header):
        with open(header, errors="replace") as f:
            return any(m in f.read() for m in marks)
    return False

jobs = []
for c in commands:
    src = c["file"]
    if not src.startswith(root + "/") or "/build" in src[len(root):] or not annotated(src):
        continue
    args = shlex.split(c["command"])
    out = []
    skip = False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a == "-o":
            skip = True
            continue
        if a in ("-c",) or a.startswith("-fstack-clash"):
            continue
        out.append(a)
    jobs.append((src, ["clang++", "-fsyntax-only", "-Wthread-safety", "-Werror=thread-safety",
                       "-Wno-unknown-warning-option"] + [a for a in out if a != src] + [src]))

def run(job):
    src, cmd = job
    r = subprocess.run(cmd, cwd=c["directory"], capture_output=True, text=True)
    bad = [l for l in r.stderr.splitlines() if "thread-safety" in l or "error:" in l]
    return src, r.returncode, bad, r.stderr

failed = 0
with ThreadPoolExecutor(max_workers=2) as pool:
    for src, rc, bad, err in pool.map(run, jobs):
        if rc != 0:
            failed += 1
            print(f"{os.path.relpath(src, root)}:\n{err}", file=sys.stderr)
print(f"thread-safety analysis: {len(jobs)} files, {failed} with findings")
sys.exit(1 if failed else 0)
PY
