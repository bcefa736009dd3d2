"""The run directory: everything a run makes, in one place that is never overwritten.

    <output_dir>/<name>-<YYYYmmdd-HHMMSS>/
        config.yaml          the validated config (structured form)
        native_config.txt    what the backend received (`retrain translate`)
        provenance.jsonl     versions, command, machine and git commits, one line per start/resume
        metrics.jsonl        one neutral record per logged step
        samples/step_N.jsonl completions with their reward breakdowns
        checkpoints/         the backend's resumable checkpoints
        model/               the final model (or adapters)
        summary.json         first vs last numbers, time, paths
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import yaml

from retrain.core.metrics import JsonlWriter, read_jsonl

# TRL names checkpoints checkpoint-N, verl global_step_N. The whole name must match: a checkpoint
# being written under a temporary name (transformers' tmp-checkpoint-N) is never picked up.
_CHECKPOINT = re.compile(r"^(?:checkpoint-|global_step_)(\d+)$")


class RunDir:
    def __init__(self, path: Path):
        self.path = path
        self._metrics: JsonlWriter | None = None

    @classmethod
    def create(cls, output_dir: str | Path, name: str) -> RunDir:
        base = Path(output_dir)
        base.mkdir(parents=True, exist_ok=True)
        stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        for attempt in range(1, 1000):
            path = base / (stem if attempt == 1 else f"{stem}-{attempt}")
            try:
                path.mkdir()  # atomic: two runs started in the same second get different dirs
                return cls(path)
            except FileExistsError:
                continue
        raise RuntimeError(f"could not create a new run directory under {base}")

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    def write_config(self, config_data: dict[str, Any], native: str) -> None:
        (self.path / "config.yaml").write_text(yaml.safe_dump(config_data, sort_keys=False), encoding="utf-8")
        (self.path / "native_config.txt").write_text(native + "\n", encoding="utf-8")

    def append_provenance(self, record: dict[str, Any]) -> None:
        writer = JsonlWriter(self.path / "provenance.jsonl")
        writer.write(record)
        writer.close()

    def write_metrics(self, record: dict[str, Any]) -> None:
        if self._metrics is None:
            self._metrics = JsonlWriter(self.metrics_path)
        self._metrics.write(record)

    def write_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        writer = JsonlWriter(self.samples_dir / f"step_{step:06d}.jsonl")
        for sample in samples:
            writer.write(sample)
        writer.close()

    def write_summary(self, summary: dict[str, Any]) -> None:
        (self.path / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_path)

    @property
    def checkpoint_marker(self) -> Path:
        """verl's record of its last complete checkpoint; the TRL backend writes it too."""
        return self.checkpoints_dir / "latest_checkpointed_iteration.txt"

    def mark_checkpoint_complete(self, step: int) -> None:
        """Record that the checkpoint of `step` is completely written (atomically: temp file, rename)."""
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_marker.with_suffix(".tmp")
        tmp.write_text(str(step), encoding="utf-8")
        tmp.replace(self.checkpoint_marker)

    def _last_complete_step(self) -> int | None:
        try:
            return int(self.checkpoint_marker.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first. TRL and verl write a checkpoint folder in place, then
        record its step in `latest_checkpointed_iteration.txt`: a folder past that step was cut off
        mid-write (a crash, SIGKILL, a full disk) and is never picked up. The TRL backend writes the
        marker (0) when a run starts. Without a marker (an adapter that writes under a temporary name
        and renames), every `checkpoint-N` folder is complete."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [p for p in self.checkpoints_dir.iterdir() if p.is_dir() and _CHECKPOINT.search(p.name)]
        last_complete = self._last_complete_step()
        if last_complete is not None:
            found = [p for p in found if self.checkpoint_step(p) <= last_complete]
        else:  # verl always writes the marker after a checkpoint: its folders without one are partial
            found = [p for p in found if not p.name.startswith("global_step_")]
        return sorted(found, key=self.checkpoint_step)

    def incomplete_checkpoints(self) -> list[Path]:
        if not self.checkpoints_dir.is_dir():
            return []
        complete = set(self.checkpoints())
        return [p for p in self.checkpoints_dir.iterdir()
                if p.is_dir() and _CHECKPOINT.search(p.name) and p not in complete]

    def latest_checkpoint(self) -> Path | None:
        checkpoints = self.checkpoints()
        return checkpoints[-1] if checkpoints else None

    @staticmethod
    def checkpoint_step(checkpoint: Path) -> int:
        match = _CHECKPOINT.search(checkpoint.name)
        return int(match.group(1)) if match else 0

    def prepare_resume(self) -> Path | None:
        """Before a backend trains in this run dir: the checkpoint to resume from, or None to start at
        step 0, with everything written after it set aside (`set_aside_after`).

        That is the latest complete checkpoint whose step has its metrics record: verl saves a step's
        checkpoint before it logs the step, so a run killed in between has the checkpoint of step N
        but no record of it; resuming from it would leave step N out of metrics.jsonl for good. Such a
        run resumes from the checkpoint before, and redoes step N."""
        checkpoints = self.checkpoints()
        if not checkpoints and not self.incomplete_checkpoints():
            return None
        logged = max((r.get("step", 0) for r in self.metrics()), default=0)
        usable = [c for c in checkpoints if self.checkpoint_step(c) <= logged]
        checkpoint = usable[-1] if usable else None
        self.set_aside_after(self.checkpoint_step(checkpoint) if checkpoint else 0)
        return checkpoint

    def set_aside_after(self, step: int) -> int:
        """Before resuming from `step`: move what later steps (about to be redone) wrote aside —
        metrics records to metrics.superseded.jsonl, sample files to samples/superseded/ — so nothing
        is lost and metrics.jsonl stays one record per step; checkpoint folders cut off mid-write go
        to checkpoints/incomplete/, later complete ones to checkpoints/superseded/, so the redone steps
        write clean ones. Returns how many records moved."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for partial in self.incomplete_checkpoints():
            (self.checkpoints_dir / "incomplete").mkdir(exist_ok=True)
            partial.replace(self.checkpoints_dir / "incomplete" / f"{partial.name}-{stamp}")
        for later_checkpoint in [c for c in self.checkpoints() if self.checkpoint_step(c) > step]:
            (self.checkpoints_dir / "superseded").mkdir(exist_ok=True)
            later_checkpoint.replace(self.checkpoints_dir / "superseded" / f"{later_checkpoint.name}-{stamp}")
        if self._last_complete_step() is not None:
            self.mark_checkpoint_complete(step)
        for sample_file in sorted(self.samples_dir.glob("step_*.jsonl")):
            if int(sample_file.stem.split("_")[1]) > step:
                (self.samples_dir / "superseded").mkdir(exist_ok=True)
                sample_file.replace(self.samples_dir / "superseded" / sample_file.name)
        records = self.metrics()
        later = [r for r in records if r.get("step", 0) > step]
        if later:
            superseded = JsonlWriter(self.path / "metrics.superseded.jsonl")
            for record in later:
                superseded.write(record)
            superseded.close()
            kept = [r for r in records if r.get("step", 0) <= step]
            tmp = self.metrics_path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
            tmp.replace(self.metrics_path)
        return len(later)

    def close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
