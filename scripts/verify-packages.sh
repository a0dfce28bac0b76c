#!/usr/bin/env bash
# Checks that every crate builds, with all its features, from exactly what `cargo package` would
# upload: a file missing from `include`, or a dependency without a version, fails here.
#
# The crates are packaged without cargo's own verification (which builds them all from scratch in
# a target directory of its own), unpacked side by side into a scratch workspace whose
# `[patch.crates-io]` points each workspace dependency at its unpacked package, and checked there
# with the repository's target directory and profiles: the registry dependencies are the ones the
# lints already compiled, only the packaged crates themselves are new. Tests and benches stay in
# the repository (they need its services, scripts and photos), hence cargo's "ignoring test"
# warnings.
#
#   scripts/verify-packages.sh   # packages the working tree as it is (--allow-dirty)
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
cargo package --workspace --locked --all-features --no-verify --allow-dirty --quiet

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
python3 - "$scratch" "$target_dir" <<'EOF'
import json, subprocess, sys, tarfile, tomllib

scratch, target = sys.argv[1], sys.argv[2]
metadata = subprocess.run(["cargo", "metadata", "--no-deps", "--format-version", "1"],
                          check=True, capture_output=True, text=True).stdout
crates = []  # (package name, unpacked directory)
for package in json.loads(metadata)["packages"]:
    unpacked = f"{package['name']}-{package['version']}"
    with tarfile.open(f"{target}/package/{unpacked}.crate") as crate:
        crate.extractall(scratch, filter="data")
    crates.append((package["name"], unpacked))


def toml_key(key):
    return key if key.replace("-", "").replace("_", "").isalnum() else json.dumps(key)


def toml_table(header, entries, out):
    out.append(f"[{header}]")
    nested = []
    for key, value in entries.items():
        if isinstance(value, dict):
            nested.append((f"{header}.{toml_key(key)}", value))
        else:
            out.append(f"{toml_key(key)} = {json.dumps(value)}")
    out.append("")
    for header, value in nested:
        toml_table(header, value, out)


out = ['[workspace]', 'resolver = "2"',
       "members = [" + ", ".join(json.dumps(d) for _, d in crates) + "]", "",
       "[patch.crates-io]"]
out += [f"{name} = {{ path = {json.dumps(d)} }}" for name, d in crates]
out.append("")
# The repository's profiles, so that the dependencies it compiled are reused.
with open("Cargo.toml", "rb") as manifest:
    for name, settings in tomllib.load(manifest).get("profile", {}).items():
        toml_table(f"profile.{name}", settings, out)
with open(f"{scratch}/Cargo.toml", "w") as manifest:
    manifest.write("\n".join(out))
EOF
cp Cargo.lock "$scratch/"

CARGO_TARGET_DIR="$target_dir" cargo check --manifest-path "$scratch/Cargo.toml" --workspace \
  --all-features --quiet
