"""Prepare, on this machine, what the GPU check needs on a GPU machine that cannot download anything
(`make gpu-check`; `make gpu-check-dry` also prepares a CPU rehearsal of it here). See docs/benchmarks.md.

    python benchmarks/gpu_check/prepare.py [--python 3.12] [--into .gpu-check/wheels] [--dry-image FILE]

What it gathers, into the git-ignored folder .gpu-check/ (the device tool's `carry` takes it along):

- wheels/: every package retrain's pins need (base, `trl`, `verl`, `rewards`; transformers from `models`) for the
  GPU machine's Python (3.12, manylinux x86_64) that its image lacks (benchmarks/gpu_check/machine.txt), or has
  at another version than the pins want (transformers, tokenizers, peft). Found by pip's own resolver (a dry run
  with a report) with torch standing in as the machine's 2.11, so that neither torch nor CUDA is downloaded.
  LEFT_OUT below are not carried, each for its reason; Ray's wheel (79 MB, over one command's 64 MiB) is
  carried import-only: without its Java jars, its cluster binaries (raylet, gcs_server) and its dashboard's web
  build. verl needs `import ray`; the check starts no Ray cluster, so verl's Ray-based GPU run is not part of it.
- cache/models/: the tokenizer, chat template and config of `retrain:tiny` and of SmolLM2-135M-Instruct, without
  weights: benchmarks/gpu_check/check.py initialises them randomly on the GPU machine (a real architecture
  and size, random weights: the check measures training mechanics and speed, not learning).
- wheels/manifest.json: what is carried, what is left out and why, and the sizes (it travels with the wheels).

It prints the carried size (these folders plus the working tree) and the device tool call to make.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHECK = ROOT / ".gpu-check"
LIMIT = 64 * 2**20  # the device tool's working-tree limit per command
MACHINE_PYTHON = "3.12"

PLATFORMS = ["manylinux_2_5_x86_64", "manylinux1_x86_64", "manylinux_2_12_x86_64", "manylinux2010_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_24_x86_64", "manylinux_2_26_x86_64",
             "manylinux_2_27_x86_64", "manylinux_2_28_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64",
             "manylinux_2_35_x86_64"]
# The machine has these, but not at the version the pins want (or at a version nobody has read).
FORCED = {"transformers", "tokenizers", "peft"}
# Declared by a package the check uses, not imported by anything the check runs (the CPU rehearsal,
# `make gpu-check-dry`, runs the same check without them), and too large to carry.
LEFT_OUT = {
    "av": "video decoding for verl's vision models (qwen-vl-utils, 35 MB); the check trains text models",
    "torchcodec": "video decoding for verl's vision models (10 MB); the check trains text models",
    "wandb": "verl's own W&B logger (20 MB); retrain's trackers are not part of the GPU check",
    "virtualenv": "Ray runtime environments (5.5 MB); no Ray cluster is started",
    "python-discovery": "virtualenv's (Ray runtime environments)",
    "distlib": "virtualenv's (Ray runtime environments)",
    "py-spy": "Ray's stack profiler (3 MB binary)",
    "opencensus": "Ray dashboard's metrics exporter", "opencensus-context": "Ray dashboard's metrics exporter",
    "google-api-core": "Ray dashboard's metrics exporter (opencensus)",
    "google-auth": "Ray dashboard's metrics exporter (opencensus)",
    "googleapis-common-protos": "Ray dashboard's metrics exporter (opencensus)",
    "proto-plus": "Ray dashboard's metrics exporter (opencensus)",
    "cryptography": "google-auth's (Ray dashboard, 4.7 MB)", "cffi": "cryptography's", "pycparser": "cffi's",
    "pyasn1": "google-auth's", "pyasn1-modules": "google-auth's",
    "colorful": "Ray's CLI colours", "aiohttp-cors": "Ray dashboard's", "smart-open": "Ray's cloud storage",
}
# Pure-Python packages of the tested set that PyPI has only as source: built into wheels here (hydra-core and
# omegaconf need antlr4-python3-runtime 4.9.*, whose only file is an sdist).
BUILT_HERE = ("antlr4-python3-runtime",)
# Ray, import-only: what `import ray` and verl's imports do not need.
RAY_DROPPED = ("ray/jars/", "ray/core/src/ray/gcs/gcs_server", "ray/core/src/ray/raylet/raylet",
               "ray/dashboard/client/build/")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements() -> list[str]:
    """What the GPU check installs: retrain's own dependencies and its `trl`, `verl` and `rewards` extras, with the
    `models` extra's transformers pin (its other packages serve rewards and loaders the check does not run)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = list(project["dependencies"])
    for extra in ("trl", "verl", "rewards"):
        wanted += [r for r in extras[extra] if not r.startswith("retrain[")]
    wanted += [r for r in extras["models"] if normalise(re.split(r"[=<>\[ ]", r)[0]) == "transformers"]
    return sorted(set(wanted))


def machine_packages() -> dict[str, str | None]:
    packages: dict[str, str | None] = {}
    for line in (HERE / "machine.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            packages[normalise(name)] = version or None
    return packages


def _torch_stand_in(folder: Path, version: str) -> None:
    """A metadata-only torch wheel: the resolver sees the machine's torch and downloads none."""
    info = f"torch-{version}.dist-info"
    with zipfile.ZipFile(folder / f"torch-{version}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: retrain\nRoot-Is-Purelib: true\n"
                                        "Tag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")


def target_options(python: str) -> list[str]:
    abi = "cp" + python.replace(".", "")
    options = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp", "--abi", abi]
    for platform in PLATFORMS:
        options += ["--platform", platform]
    return options


def tested_versions(machine_python: bool = True) -> list[str]:
    """The versions of this (the dev) environment, as constraints: the GPU machine gets the set the tests ran
    with, not another solution of the same pins (left alone, the resolver picks hydra-core 0.11 over 1.3);
    except the versions machine.txt gives, which are what the machine will really have."""
    listed = subprocess.run([sys.executable, "-m", "pip", "list", "--format=freeze", "--exclude-editable"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    versions = {normalise(line.split("==")[0]): line for line in listed if "==" in line}
    # What the machine has at a version a session saw stays at that version (it is not carried). Not for the
    # CPU rehearsal's Python: some of those versions need the machine's (numpy 2.5 needs Python 3.12).
    for name, version in machine_packages().items() if machine_python else ():
        if version is not None and name not in FORCED:
            versions[name] = f"{name}=={version}"
    return [line for name, line in versions.items() if name not in ("torch", "retrain")]


def build_sdists(into: Path) -> None:
    """Wheels of BUILT_HERE at their tested versions (pure Python: one wheel serves every Python)."""
    into.mkdir(parents=True, exist_ok=True)
    versions = dict(line.split("==", 1) for line in tested_versions())
    for name in BUILT_HERE:
        version = next((v for n, v in versions.items() if normalise(n) == name), None)
        if version is None or list(into.glob(f"{name.replace('-', '_')}-{version}-*.whl")):
            continue
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(into),
                        f"{name}=={version}"], check=True)


def resolve(python: str) -> list[tuple[str, str]]:
    """(name, version) of everything pip's resolver installs for `requirements()` on that Python, torch excepted,
    constrained to the versions of the environment this runs in."""
    with tempfile.TemporaryDirectory() as scratch:
        stand_in = Path(scratch) / "stand-in"
        stand_in.mkdir()
        _torch_stand_in(stand_in, "2.11.0+machine")
        build_sdists(CHECK / "built")
        report = Path(scratch) / "report.json"
        constraints = Path(scratch) / "constraints.txt"
        constraints.write_text("\n".join(tested_versions(machine_python=python == MACHINE_PYTHON)) + "\n")
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
                   "--report", str(report), "--target", str(Path(scratch) / "t"), *target_options(python),
                   "--find-links", str(stand_in), "--find-links", str(CHECK / "built"), "-c", str(constraints),
                   "torch==2.11.0+machine", *requirements()]
        subprocess.run(command, check=True)
        installs = json.loads(report.read_text())["install"]
    return sorted((i["metadata"]["name"], i["metadata"]["version"]) for i in installs
                  if normalise(i["metadata"]["name"]) != "torch")


def download(packages: list[str], python: str, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    have = {normalise(p.name.split("-")[0]) + "==" + p.name.split("-")[1] for p in into.glob("*.whl")}
    missing = [p for p in packages if normalise(p.split("==")[0]) + "==" + p.split("==")[1] not in have]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *target_options(python),
                        "--find-links", str(CHECK / "built"), "-d", str(into), *missing], check=True)


def ray_import_only(folder: Path) -> None:
    """Repack Ray's wheel without RAY_DROPPED (its RECORD too), under the same name."""
    (wheel,) = folder.glob("ray-*.whl")
    with zipfile.ZipFile(wheel) as source:
        names = source.namelist()
        if not any(name.startswith(RAY_DROPPED) for name in names):
            return  # already repacked
        repacked = wheel.with_suffix(".tmp")
        with zipfile.ZipFile(repacked, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target:
            for name in names:
                if name.startswith(RAY_DROPPED):
                    continue
                data = source.read(name)
                if name.endswith(".dist-info/RECORD"):
                    lines = [line for line in data.decode().splitlines() if not line.startswith(RAY_DROPPED)]
                    data = ("\n".join(lines) + "\n").encode()
                target.writestr(source.getinfo(name), data)
    repacked.replace(wheel)


def models(into: Path) -> None:
    """Tokenizers, chat templates and configs, no weights (check.py initialises them on the machine)."""
    sys.path.insert(0, str(ROOT))
    from retrain.models import resolve_model

    for name, folder in (("retrain:tiny", "tiny"), ("retrain:smollm2-135m-instruct", "smollm2-135m-instruct")):
        source = Path(resolve_model(name))
        target = into / "models" / folder
        target.mkdir(parents=True, exist_ok=True)
        for file in source.iterdir():
            if file.name != "model.safetensors" and not (target / file.name).exists():
                shutil.copy2(file, target / file.name)
        (target / "model.safetensors").unlink(missing_ok=True)  # built there, never carried


def tree_size() -> int:
    """The working tree that travels: tracked files and untracked files git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return sum((ROOT / name).stat().st_size for name in listed if name and (ROOT / name).is_file())


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=MACHINE_PYTHON, help="the GPU machine's Python (default 3.12)")
    parser.add_argument("--into", default=str(CHECK / "wheels"))
    parser.add_argument("--dry-image", help="also write the packages the machine's image provides (pinned to what "
                                            "the resolver chose), for the CPU rehearsal's fresh environment")
    args = parser.parse_args()
    into = Path(args.into).resolve()
    machine = machine_packages()
    resolved = resolve(args.python)
    carried, provided = [], []
    for name, version in resolved:
        key = normalise(name)
        if key in LEFT_OUT:
            continue
        (carried if key not in machine or key in FORCED else provided).append(f"{name}=={version}")
    print(f"gpu-check: {len(resolved)} packages resolved for Python {args.python}: {len(carried)} to carry, "
          f"{len(provided)} on the machine, {len([n for n, _ in resolved if normalise(n) in LEFT_OUT])} left out")
    download(carried, args.python, into)
    stale = [p for p in into.glob("*.whl")
             if f"{normalise(p.name.split('-')[0])}=={p.name.split('-')[1]}" not in
             {normalise(c.split("==")[0]) + "==" + c.split("==")[1] for c in carried}]
    for wheel in stale:  # from an earlier resolution: two versions of one package stop the install
        wheel.unlink()
    ray_import_only(into)
    models(CHECK / "cache")
    if args.dry_image:
        Path(args.dry_image).parent.mkdir(parents=True, exist_ok=True)
        Path(args.dry_image).write_text("\n".join(provided) + "\n")
    manifest = {
        "python": args.python, "carried": carried, "on_the_machine": provided,
        "left_out": {name: reason for name, reason in LEFT_OUT.items()
                     if any(normalise(n) == name for n, _ in resolved)},
        "ray": f"import-only: without {', '.join(RAY_DROPPED)}",
        "sizes": {"wheels": folder_size(into), "cache": folder_size(CHECK / "cache"), "tree": tree_size()},
    }
    (into / "manifest.json").write_text(json.dumps(manifest, indent=1))  # travels with the wheels
    sizes = manifest["sizes"]
    total = sum(sizes.values())
    mib = {k: f"{v / 2**20:.1f} MiB" for k, v in sizes.items()}
    print(f"gpu-check: carried {total / 2**20:.1f} MiB of {LIMIT / 2**20:.0f} MiB (wheels {mib['wheels']}, models "
          f"{mib['cache']}, working tree {mib['tree']})")
    if total > LIMIT and args.python == MACHINE_PYTHON:  # what travels; the rehearsal's own wheels stay here
        sys.exit(f"gpu-check: over the device tool's {LIMIT / 2**20:.0f} MiB per command: leave more out (LEFT_OUT) "
                 "or carry the rest in a second command")
    if args.python == MACHINE_PYTHON:
        relative = into.relative_to(ROOT)
        print("gpu-check: on the GPU machine (the device tool's `run`), one command, well inside 10 minutes:\n"
              f'  run(command="bash benchmarks/gpu_check/run.sh", carry=["{relative}", ".gpu-check/cache"], '
              "timeout_s=570)\n"
              "  results: $OUT/gpu-check.json (a summary), $OUT/gpu-check.log, $OUT/*.xml, $OUT/throughput.json")


if __name__ == "__main__":
    main()
