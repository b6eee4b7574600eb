#!/usr/bin/env python3
"""Checks the folder picture: a folder includes only folders below it in the layer order.

Usage: check_layers.py [ROOT]. Prints each include that runs upwards (or sideways between
folders of one layer) and exits 1 when there is any.
"""
import os
import re
import sys

# Lowest first; folders on one line share a layer and may not include each other.
LAYERS = [
    ["proto"],
    ["common"],
    ["web"],
    ["transport"],
    ["telemetry"],
    ["datastore"],
    ["attestors"],
    ["server"],
    ["federation", "oidc"],
    ["upstream"],
    ["downstream"],
    ["workload_api"],
    ["agent"],
    ["runtime"],
    ["cmd"],
]
RANK = {folder: i for i, layer in enumerate(LAYERS) for folder in layer}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def folder_of_include(path):
    if path.startswith("trellis/") or path.endswith(".pb.h") or path.endswith(".grpc.pb.h"):
        return "proto"
    top = path.split("/", 1)[0]
    return top if top in RANK else None


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), ".."))
    bad = []
    checked = 0
    for folder in RANK:
        base = os.path.join(root, folder)
        for dirpath, _, files in os.walk(base):
            for name in files:
                if not name.endswith((".h", ".cc", ".proto")):
                    continue
                path = os.path.join(dirpath, name)
                checked += 1
                with open(path, errors="replace") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        target = folder_of_include(m.group(1))
                        if target is None or target == folder:
                            continue
                        if RANK[target] >= RANK[folder]:
                            bad.append(f"{os.path.relpath(path, root)}:{lineno}: {folder} "
                                       f"includes {m.group(1)} ({target} is not below it)")
    for b in bad:
        print(b)
    print(f"check_layers: {checked} files, {len(bad)} includes running upwards")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
