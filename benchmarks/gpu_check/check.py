"""The GPU check itself (benchmarks/gpu_check/run.sh runs it after installing the carried wheels): on the GPU
machine, or on this CPU as its rehearsal (`make gpu-check-dry`), where what needs CUDA skips.

    python benchmarks/gpu_check/check.py --out DIR [--budget-seconds 480]

Steps, each timed, each with its own time limit, each recorded in DIR/gpu-check.json whatever happens:

1. environment: Python, torch and CUDA, the GPU, the versions of the packages that matter.
2. requirements: every carried package's declared requirements are installed at a version they accept (only
   what prepare.py left out on purpose may be absent), and retrain, TRL, verl, Ray, peft, datasets import.
3. models: random weights for the carried model folders (retrain:tiny, SmolLM2-135M-Instruct's architecture).
4. gpu tests: `pytest -m gpu` on TRL's GPU tests (bf16 with transformers generation; vLLM, Unsloth and two-GPU
   tests skip: not installed, one GPU) and the bf16 step-parity test (TRL and verl's actor worker on CUDA).
5. cpu parity: the float32 step-parity case `dapo` on the CPU (TRL and verl's worker, the default suite's
   tolerances) with the carried packages and the machine's torch.
6. throughput: benchmarks/gpu_throughput.py on `trl-transformers` (CUDA only).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as metadata
import json
import os
import platform
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
IMPORTS = ("retrain", "transformers", "trl", "verl", "ray", "peft", "datasets", "accelerate", "tensordict")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def environment() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["bf16"] = torch.cuda.is_bf16_supported()
    for name in ("transformers", "trl", "verl", "ray", "peft", "datasets", "accelerate", "tokenizers", "numpy"):
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = None
    return info


def requirements(site: Path, left_out: set[str]) -> dict[str, Any]:
    from packaging.requirements import Requirement

    installed: dict[str, str] = {}
    for found in metadata.distributions():  # in sys.path order: the first of a name is the one Python imports
        installed.setdefault(normalise(found.metadata["Name"]), found.version)
    carried = [d for d in metadata.distributions(path=[str(site)])]
    problems, absent_as_planned = [], set()
    for distribution in carried:
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            name = normalise(requirement.name)
            if name not in installed:
                if name in left_out:
                    absent_as_planned.add(name)
                else:
                    problems.append(f"{distribution.metadata['Name']} needs {text}: not installed")
            elif not requirement.specifier.contains(installed[name], prereleases=True):
                problems.append(f"{distribution.metadata['Name']} needs {text}: {installed[name]} is installed")
    failed_imports = {}
    for module in IMPORTS:
        try:
            importlib.import_module(module)
        except Exception as exc:  # the point is to see every failure, not the first
            failed_imports[module] = f"{type(exc).__name__}: {exc}"
    return {"status": "passed" if not problems and not failed_imports else "failed", "carried": len(carried),
            "problems": problems, "failed_imports": failed_imports, "absent_as_planned": sorted(absent_as_planned)}


def models(cache: Path) -> dict[str, Any]:
    """Random weights (seed 0) for each carried model folder that has none: the real architecture and size."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    built = {}
    for folder in sorted((cache / "models").iterdir()):
        if (folder / "model.safetensors").exists():
            continue
        torch.manual_seed(0)
        config = AutoConfig.from_pretrained(folder)
        model = AutoModelForCausalLM.from_config(config)
        model.save_pretrained(folder)
        built[folder.name] = sum(p.numel() for p in model.parameters())
    return {"status": "passed", "random_parameters": built}


def _run(command: list[str], timeout: float) -> int | None:
    """The command's exit status, its output in the log; None when it ran past `timeout`."""
    print(f"gpu-check: $ {' '.join(command)}", flush=True)
    try:
        return subprocess.run(command, cwd=ROOT, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return None


def pytest_step(out: Path, name: str, arguments: list[str], timeout: float) -> dict[str, Any]:
    report = out / f"{name}.xml"
    returncode = _run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs",
                       f"--junitxml={report}", *arguments], timeout)
    if returncode is None:
        return {"status": "timed out", "timeout": timeout}
    counts: dict[str, Any] = {"returncode": returncode}
    if report.exists():
        suite = ElementTree.parse(report).getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        counts.update({key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")})
        counts["skipped_why"] = sorted({(case.find("skipped").get("message") or "")[:160]  # type: ignore[union-attr]
                                        for case in suite.iter("testcase") if case.find("skipped") is not None})
        counts["failed"] = [case.get("name") for case in suite.iter("testcase")
                            if case.find("failure") is not None or case.find("error") is not None]
    counts["status"] = "passed" if returncode in (0, 5) and not counts.get("failed") else "failed"
    return counts


def throughput(out: Path, timeout: float) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"status": "skipped", "why": "no CUDA GPU"}
    returncode = _run([sys.executable, str(ROOT / "benchmarks" / "gpu_throughput.py"), "--variants",
                       "trl-transformers", "--model", "retrain:smollm2-135m-instruct", "--steps", "3",
                       "--out", str(out / "throughput.json")], timeout)
    if returncode is None:
        return {"status": "timed out", "timeout": timeout}
    result: dict[str, Any] = {"returncode": returncode}
    if (out / "throughput.json").exists():
        result["results"] = json.loads((out / "throughput.json").read_text())
    result["status"] = "passed" if returncode == 0 else "failed"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--site", required=True, help="where run.sh installed the carried wheels")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--budget-seconds", type=float, default=480.0)
    args = parser.parse_args()
    out, started = Path(args.out), time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    os.environ["RETRAIN_GPU_CHECK_OUT"] = str(out.resolve())
    summary: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "steps": {}}
    manifest = json.loads(Path(args.manifest).read_text())

    def left() -> float:
        return max(30.0, args.budget_seconds - (time.monotonic() - started))

    steps: list[tuple[str, Any]] = [
        ("environment", environment),
        ("requirements", lambda: requirements(Path(args.site), set(manifest["left_out"]))),
        ("models", lambda: models(Path(os.environ["RETRAIN_CACHE"]))),
        ("gpu tests", lambda: pytest_step(out, "gpu-tests", [
            "-m", "gpu", "tests/backends/trl/test_gpu.py", "tests/parity/test_step_gpu.py"], min(300.0, left()))),
        ("cpu parity", lambda: pytest_step(out, "cpu-parity", [
            "tests/parity/test_step.py", "-k", "one_step and dapo"], min(150.0, left()))),
        ("throughput", lambda: throughput(out, min(240.0, left()))),
    ]
    for name, step in steps:
        began = time.monotonic()
        print(f"gpu-check: {name} ...", flush=True)
        try:
            result = step()
        except Exception as exc:  # record it and go on: one broken step must not hide the others' results
            result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        result["seconds"] = round(time.monotonic() - began, 1)
        summary["steps"][name] = result
        (out / "gpu-check.json").write_text(json.dumps(summary, indent=1, default=str))
        print(f"gpu-check: {name}: {result.get('status', 'done')} ({result['seconds']} s)", flush=True)
    summary["seconds"] = round(time.monotonic() - started, 1)
    (out / "gpu-check.json").write_text(json.dumps(summary, indent=1, default=str))
    print("gpu-check: " + ", ".join(f"{k} {v.get('status', 'done')}" for k, v in summary["steps"].items()))
    sys.exit(0 if all(v.get("status") in ("passed", "skipped", None) for v in summary["steps"].values()) else 1)


if __name__ == "__main__":
    main()
