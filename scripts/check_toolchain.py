"""Keeps the toolchain claim honest (run by scripts/check-toolchain.sh from .ci/run): every workspace member declares
a `rust-version`, it is at least the highest `rust-version` any locked dependency declares, and the rustc here is at
least that."""
import json
import subprocess
import sys


def parse(version):
    parts = [int(part) for part in version.split(".")[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


def text(version):
    return ".".join(map(str, version))


def main():
    metadata = json.loads(
        subprocess.run(["cargo", "metadata", "--format-version", "1", "--locked"], capture_output=True, text=True,
                       check=True).stdout)
    members = set(metadata["workspace_members"])
    problems, declared = [], {}
    needed, needed_by = (0, 0, 0), None
    for package in metadata["packages"]:
        name, version = package["name"], package.get("rust_version")
        if package["id"] in members:
            if version:
                declared[name] = parse(version)
            else:
                problems.append(name + " declares no rust-version (add rust-version.workspace = true)")
        elif version and parse(version) > needed:
            needed, needed_by = parse(version), name
    for name, version in declared.items():
        if version < needed:
            problems.append("%s claims rust-version %s but %s needs %s" % (name, text(version), needed_by, text(needed)))
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
    for name, version in declared.items():
        if parse(rustc) < version:
            problems.append("rustc %s is older than %s's rust-version %s" % (rustc, name, text(version)))
    if problems:
        print("\n".join("toolchain: " + problem for problem in problems), file=sys.stderr)
        sys.exit(1)
    print("toolchain: %d members declare rust-version %s; locked dependencies need %s (%s); rustc %s"
          % (len(declared), text(max(declared.values())), text(needed), needed_by, rustc))


main()
