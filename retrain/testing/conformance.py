"""The adapter conformance kit: what every retrain backend must do, as pytest tests.

Subclass `BackendConformance` in your adapter's tests and set `backend` to the name your package
registers in the `retrain.backends` entry-point group. The kit trains `retrain:tiny` (a ~3M
parameter model that works offline) for two steps on a small cat-poem task and checks, with
messages that say what to fix:

- registration: the entry point exists, loads a `Backend`, and loading imports no ML library;
- translate: returns a printable `NativeConfig`, the same twice, with no files or processes made;
- validation: every option outside the declared `Capabilities` (and your `rejected_options`) is
  a `ConfigError` naming the field, and every declared loss aggregation / reward scaling passes;
- every config field is honoured (changing it changes the native config), rejected (a `ConfigError`
  naming it) or noted (said in the translation's notes), or is one retrain applies itself — never
  silently ignored (`retrain.testing.fields`);
- training: the run directory layout, one neutral metrics record per step with the required and
  per-component keys, samples with reward breakdowns, a checkpoint and a final model whose weights
  training changed;
- rewards: every logged reward is the retrain Scorer's, and a fresh Scorer gives each saved
  completion the same total again;
- evaluation: the held-out set is evaluated before training and on the final model the backend
  exported, and `retrain eval` on the run directory gives the same numbers;
- resume: `--resume` continues from the last checkpoint with no lost or repeated steps;
- failure: a reward that raises fails the run with a message naming it, `summary.json` says
  "failed", and no process the run started is left.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import psutil
import pytest
from rich.console import Console

from retrain.core.backend import Backend, Capabilities, NativeConfig
from retrain.core.config import TrainingConfig
from retrain.core.errors import ConfigError, RetrainError
from retrain.core.metrics import REQUIRED_KEYS, read_jsonl
from retrain.core.registry import ENTRY_POINT_GROUP, load_backend
from retrain.core.rollout import Message, Rollout
from retrain.core.run import run_sync
from retrain.core.run_dir import RunDir
from retrain.core.scoring import Scorer

PROMPTS = ["Compose a joyful feline lyric.", "Draft a cheerful ode to a purring companion."]
HELD_OUT = ["Write a short poem about a cat.", "A happy verse about kittens, please."]
GROUP_SIZE = 4
BATCH = len(PROMPTS) * GROUP_SIZE
COMPONENT_KEYS = ("verifiers/mentions_a_cat/pass_rate", "rewards/goal/mean", "rewards/short/mean",
                  "constraints/avoid_s/mean")
ML_LIBRARIES = ("torch", "transformers", "trl", "verl", "ray", "vllm", "deepspeed", "jax")


def broken_reward(completion: str) -> float:
    """A reward with a bug, for the failure check."""
    raise ValueError("this reward is broken on purpose")


def conformance_config(output_dir: Path, backend: str, model: str = "retrain:tiny", steps: int = 2) -> dict[str, Any]:
    """The kit's task: 2 prompts x 4 completions of 16 tokens, a verifier, the semantic goal, a
    plain reward and a constraint; a checkpoint every step; every completion kept as a sample."""
    return {
        "backend": backend,
        "model": {"name": model},
        "task": "Write happy cat poems without the letter s.",
        "data": {"prompts": list(PROMPTS)},
        "verifiers": [{"rule": "mentions_a_cat"}],
        "rewards": {
            "goal": "Poem is happy, creative, and about a cat.",
            "functions": [{"function": "length", "name": "short", "params": {"max_words": 30}}],
            "constraints": [{"type": "penalize_text_containing", "name": "avoid_s", "text_to_avoid": "s",
                             "penalty_score": -1.0}],
        },
        "algorithm": {"group_size": GROUP_SIZE, "prompts_per_step": len(PROMPTS), "max_steps": steps,
                      "max_completion_tokens": 16, "learning_rate": 1e-3},
        "training": {"output_dir": str(output_dir), "samples_per_step": BATCH, "save_every": 1},
        "evaluation": {"prompts": list(HELD_OUT), "max_completion_tokens": 16},
    }


def new_child_processes(before: set[int]) -> list[str]:
    """Live descendants of this process that were not there before (zombies are already dead)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.pid in before or child.status() == psutil.STATUS_ZOMBIE:
                continue
            found.append(f"{child.pid}: {' '.join(child.cmdline())[:200]}")
        except psutil.NoSuchProcess:
            continue
    return found


def _children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


def _assert_no_process_left(before: set[int], grace_seconds: float) -> None:
    deadline = time.monotonic() + grace_seconds
    while (left := new_child_processes(before)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, "processes the run started are still running after it ended (stop them by their ids in " \
        "`train`, also on failure):\n" + "\n".join(left)


def _samples(run_dir: Path, step: int) -> list[dict[str, Any]]:
    return read_jsonl(run_dir / "samples" / f"step_{step:06d}.jsonl")


def assert_trained_on_the_scorer(run_dir: Path, batch: int = BATCH) -> None:
    """Each step's `reward/mean` is the mean of the Scorer totals of its whole batch (the samples,
    `samples_per_step` >= batch), and a fresh Scorer gives every saved completion the same total."""
    scorer = Scorer.from_config(TrainingConfig.from_yaml(run_dir / "config.yaml"))
    for record in read_jsonl(run_dir / "metrics.jsonl"):
        samples = _samples(run_dir, record["step"])
        assert len(samples) == batch, (
            f"step {record['step']}: samples/step_{record['step']:06d}.jsonl has {len(samples)} completions, "
            f"expected the whole batch of {batch} (training.samples_per_step)"
        )
        totals = [s["breakdown"]["total"] for s in samples]
        assert record["reward/mean"] == pytest.approx(sum(totals) / len(totals), rel=1e-5, abs=1e-6), (
            f"step {record['step']}: reward/mean is not the mean of the Scorer totals of its completions; "
            "the backend must train on the Scorer's totals"
        )
        rescored = scorer.score_sync([
            Rollout([Message("user", s["prompt"])], [Message("assistant", s["completion"])]) for s in samples
        ])
        assert [b.total for b in rescored] == pytest.approx(totals, abs=1e-5), (
            f"step {record['step']}: a fresh Scorer scores the saved completions differently"
        )


QUIET = Console(file=open(os.devnull, "w"))  # noqa: SIM115  # runs print nothing during the kit


@dataclass
class TrainedRun:
    """What the kit's training run left, read right after it finished (before the resume check)."""

    summary: dict[str, Any]
    run_dir: Path
    records: list[dict[str, Any]]
    children_before: set[int]


class BackendConformance:
    """Subclass as `class TestMyBackend(BackendConformance): backend = "mine"`.

    Optional class attributes: `model` (default `retrain:tiny`), `rejected_options` (config
    fragments your `check_config` must reject, with the field it must name), `process_grace_seconds`.
    Add your own tests to the subclass; the class-scoped `trained` fixture gives the kit's run.
    """

    backend: ClassVar[str] = ""
    model: ClassVar[str] = "retrain:tiny"
    steps: ClassVar[int] = 2
    rejected_options: ClassVar[list[tuple[dict[str, Any], str]]] = []
    process_grace_seconds: ClassVar[float] = 20.0

    def config(self, output_dir: Path, **sections: Any) -> dict[str, Any]:
        """The kit's config for this backend (with the defaults it supports), `sections` merged in."""
        data = conformance_config(output_dir, self.backend, self.model, self.steps)
        capabilities = self.load().capabilities
        if "dapo" not in capabilities.loss_aggregations:
            data["algorithm"]["loss_aggregation"] = sorted(capabilities.loss_aggregations)[0]
        if "group" not in capabilities.reward_scalings:
            data["algorithm"]["reward_scaling"] = sorted(capabilities.reward_scalings)[0]
        for section, values in sections.items():
            data[section] = {**data[section], **values} if isinstance(values, dict) and section in data else values
        if "environment" in sections:
            data.pop("evaluation")  # environment episodes are not evaluated yet (a validation error of its own)
        return data

    def load(self) -> Backend:
        assert self.backend, "set `backend = '<name>'` on your BackendConformance subclass"
        return load_backend(self.backend)

    @pytest.fixture(scope="class")
    def trained(self, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
        before = _children()
        summary = run_sync(self.config(tmp_path_factory.mktemp(f"conformance-{self.backend}")), console=QUIET)
        run_dir = Path(summary["run_dir"])
        return TrainedRun(summary, run_dir, read_jsonl(run_dir / "metrics.jsonl"), before)

    # -- registration ---------------------------------------------------------------------------

    def test_registered_in_the_entry_point_group(self) -> None:
        points = {point.name: point for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
        assert self.backend in points, (
            f"no '{self.backend}' entry point in group '{ENTRY_POINT_GROUP}'; add to your pyproject.toml:\n"
            f'[project.entry-points."{ENTRY_POINT_GROUP}"]\n{self.backend} = "your_package:backend"'
        )
        loaded = points[self.backend].load()
        backend = loaded() if isinstance(loaded, type) else loaded
        assert isinstance(backend, Backend), "the entry point must load an object with name, capabilities, " \
            "check_config, translate and train (retrain.core.backend.Backend)"
        assert backend.name == self.backend, f"backend.name is '{backend.name}', registered as '{self.backend}'"
        assert isinstance(backend.capabilities, Capabilities)

    def test_loading_imports_no_ml_library(self) -> None:
        """`retrain validate` and `import retrain` stay fast: heavy imports belong in translate/train."""
        code = (
            "import sys; from retrain.core.registry import load_backend; "
            f"load_backend({self.backend!r}); "
            f"print(','.join(m for m in {ML_LIBRARIES!r} if m in sys.modules))"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip() == "", f"loading the backend imported {result.stdout.strip()}; import them " \
            "inside translate() and train()"

    # -- translate ------------------------------------------------------------------------------

    def test_translate_is_printable_repeatable_and_has_no_side_effects(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        config = TrainingConfig.from_data(self.config(tmp_path / "runs"))
        backend = self.load()
        before = _children()
        first, second = backend.translate(config), backend.translate(config)
        assert isinstance(first, NativeConfig) and first.backend == self.backend
        rendered = first.render()
        assert isinstance(rendered, str) and rendered.strip(), "NativeConfig.render() must print the config"
        assert rendered == second.render(), "translate must give the same native config for the same config"
        json.dumps(first.settings, default=str)  # plain data
        assert list(tmp_path.iterdir()) == [], "translate wrote files: " + ", ".join(
            str(p) for p in tmp_path.rglob("*")
        )
        _assert_no_process_left(before, self.process_grace_seconds)

    # -- validation -----------------------------------------------------------------------------

    def _gaps(self) -> list[tuple[dict[str, Any], str]]:
        """Config fragments outside the declared capabilities, with the field that must be named."""
        capabilities = self.load().capabilities
        gaps: list[tuple[dict[str, Any], str]] = []
        for loss in sorted({"grpo", "dr_grpo", "dapo"} - capabilities.loss_aggregations):
            gaps.append(({"algorithm": {"loss_aggregation": loss}}, "algorithm.loss_aggregation"))
        for scaling in sorted({"group", "batch", "none"} - capabilities.reward_scalings):
            gaps.append(({"algorithm": {"reward_scaling": scaling}}, "algorithm.reward_scaling"))
        if not capabilities.lora:
            gaps.append(({"model": {"name": self.model, "lora": {"r": 4}}}, "model.lora"))
        if not capabilities.kl_penalty:
            gaps.append(({"algorithm": {"kl_coef": 0.05}}, "algorithm.kl_coef"))
        if not capabilities.asymmetric_clip:
            gaps.append(({"algorithm": {"clip_range_high": 0.28}}, "algorithm.clip_range_high"))
        if not capabilities.environments:
            gaps.append(({"environment": {"type": "tools", "tools": ["calculator"]}}, "environment"))
        if not capabilities.multi_node:
            gaps.append(({"resources": {"nodes": 2}}, "resources.nodes"))
        if not capabilities.ray_cluster:
            gaps.append(({"resources": {"ray_address": "auto"}}, "resources.ray_address"))
        from retrain.core.config.algorithm import PRESETS

        declared = set(self._declared_names())
        gaps += [({"algorithm": {"name": name}}, "algorithm.name") for name in PRESETS if name not in declared]
        return gaps + list(self.rejected_options)

    def test_options_it_cannot_honour_are_config_errors_naming_the_field(self, tmp_path: Path) -> None:
        gaps = self._gaps()
        if not gaps:
            pytest.skip("the backend declares every option and lists no rejected_options: nothing to reject")
        for fragment, field in gaps:
            with pytest.raises(ConfigError) as info:
                TrainingConfig.from_data(self.config(tmp_path, **fragment))
            named = [issue.field for issue in info.value.issues]
            assert any(name and name.startswith(field) for name in named), (
                f"{fragment} was rejected, but no issue names '{field}' (issues name {named})"
            )

    def test_every_config_field_is_honoured_rejected_or_noted(self) -> None:
        from retrain.testing.fields import PROBES, probe

        ignored = [field for field in PROBES if probe(self.backend, field) == "ignored"]
        assert not ignored, (
            f"changing {ignored} changes neither the native config nor its notes, and validation accepts it: "
            "the field is silently ignored. Carry it into translate(), or reject it in check_config naming it"
        )

    def _declared_names(self) -> list[str]:
        """The algorithm names whose every part the backend declares."""
        from retrain.core.config.algorithm import PRESETS

        capabilities = self.load().capabilities
        return [name for name, preset in PRESETS.items()
                if preset.get("advantage", "grpo") in capabilities.advantages
                and preset.get("policy_loss", "clip") in capabilities.policy_losses
                and (not preset.get("dynamic_sampling") or capabilities.dynamic_sampling)]

    def test_options_it_declares_pass_validation(self, tmp_path: Path) -> None:
        """Every declared option validates, alone or (a part some algorithm needs, e.g. RLOO's sequence_sum)
        with one of the declared algorithm names."""
        capabilities = self.load().capabilities
        names = self._declared_names()
        for name in names:
            TrainingConfig.from_data(self.config(tmp_path, algorithm={"name": name}))

        def passes(option: dict[str, Any]) -> bool:
            for algorithm in [option] + [{"name": name, **option} for name in names]:
                try:
                    TrainingConfig.from_data(self.config(tmp_path, algorithm=algorithm))
                    return True
                except ConfigError:
                    continue
            return False

        options = ([{"loss_aggregation": loss} for loss in sorted(capabilities.loss_aggregations)]
                   + [{"reward_scaling": scaling} for scaling in sorted(capabilities.reward_scalings)]
                   + [{"advantage": advantage} for advantage in sorted(capabilities.advantages)]
                   + [{"policy_loss": loss} for loss in sorted(capabilities.policy_losses)])
        failing = [option for option in options if not passes(option)]
        assert not failing, f"declared in Capabilities, but no declared algorithm validates with {failing}"

    # -- training -------------------------------------------------------------------------------

    def test_a_run_leaves_a_complete_run_directory(self, trained: TrainedRun) -> None:
        summary, run_dir = trained.summary, trained.run_dir
        assert summary["status"] == "completed" and summary["steps"] == self.steps, summary
        for name in ("config.yaml", "native_config.txt", "metrics.jsonl", "summary.json"):
            assert (run_dir / name).is_file(), f"{name} missing from the run directory"
        checkpoint = RunDir(run_dir).latest_checkpoint()
        assert checkpoint is not None, "no checkpoint under checkpoints/ (name them checkpoint-<step>)"
        assert RunDir.checkpoint_step(checkpoint) == self.steps, f"the last checkpoint is {checkpoint.name}"
        model_dir = summary.get("model_dir")
        assert model_dir and any(Path(model_dir).iterdir()), "TrainResult.final_model_dir must hold the model"

    def test_metrics_are_one_neutral_record_per_step(self, trained: TrainedRun) -> None:
        assert [r["step"] for r in trained.records] == list(range(1, self.steps + 1))
        for record in trained.records:
            missing = [k for k in (*REQUIRED_KEYS, *COMPONENT_KEYS) if k not in record]
            assert not missing, f"step {record['step']} lacks neutral keys {missing}"
            for key in (*REQUIRED_KEYS, *COMPONENT_KEYS):
                value = record[key]
                assert value is None or isinstance(value, int | float), f"{key} = {value!r} is not a number"
            assert 0.0 <= record["verifiers/mentions_a_cat/pass_rate"] <= 1.0
            assert record["step_seconds"] > 0

    def test_training_changes_the_weights(self, trained: TrainedRun) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        from retrain.models import resolve_model

        trained_weights = AutoModelForCausalLM.from_pretrained(trained.summary["model_dir"]).state_dict()
        initial = AutoModelForCausalLM.from_pretrained(resolve_model(self.model)).state_dict()
        # Compared in the exported dtype (an exporter may write bf16).
        changed = [name for name, weight in trained_weights.items()
                   if name in initial and not torch.equal(weight, initial[name].to(weight.dtype))]
        assert changed, "the final model has the initial weights: the backend trained nothing"

    def test_rewards_come_from_the_scorer(self, trained: TrainedRun) -> None:
        assert_trained_on_the_scorer(trained.run_dir)

    def test_the_held_out_set_is_evaluated_before_and_after(self, trained: TrainedRun) -> None:
        from retrain.evaluation import evaluate

        records = read_jsonl(trained.run_dir / "eval.jsonl")
        assert [r["step"] for r in records] == [0, self.steps], "eval.jsonl: the baseline (0) and the final model"
        for record in records:
            for key in ("eval/reward/mean", "eval/pass@1", "eval/verifiers/mentions_a_cat/pass_rate",
                        "eval/completion_length/mean"):
                assert key in record, f"eval.jsonl lacks {key} at step {record['step']}"
        config = TrainingConfig.from_yaml(trained.run_dir / "config.yaml")
        metrics = evaluate(config, trained.run_dir).metrics  # the model the backend exported, as `retrain eval`
        again = {k: None if not math.isfinite(v) else v for k, v in metrics.items()}  # as eval.jsonl holds them
        assert again == {k: v for k, v in records[-1].items() if k.startswith("eval/")}, (
            "the final model evaluates differently from the run's own evaluation of it")

    def test_a_finished_run_leaves_no_process(self, trained: TrainedRun) -> None:
        _assert_no_process_left(trained.children_before, self.process_grace_seconds)

    def test_resume_continues_from_the_last_checkpoint(self, trained: TrainedRun) -> None:
        config = TrainingConfig.from_yaml(trained.run_dir / "config.yaml")
        resumed = run_sync(config, resume=trained.run_dir, max_steps=self.steps + 1, console=QUIET)
        assert resumed["status"] == "completed" and resumed["run_dir"] == str(trained.run_dir)
        records = read_jsonl(trained.run_dir / "metrics.jsonl")
        assert [r["step"] for r in records] == list(range(1, self.steps + 2)), "steps lost or repeated on resume"
        assert records[: self.steps] == trained.records, "resuming rewrote the metrics of finished steps"
        latest = RunDir(trained.run_dir).latest_checkpoint()
        assert latest is not None and RunDir.checkpoint_step(latest) == self.steps + 1

    # -- failure --------------------------------------------------------------------------------

    def test_a_failing_reward_fails_the_run_naming_it_and_leaves_no_process(self, tmp_path: Path) -> None:
        config = self.config(tmp_path / "runs")
        config["rewards"] = {**config["rewards"], "functions": [
            {"function": "retrain.testing.conformance:broken_reward", "bounds": [0, 1]}
        ]}
        before = _children()
        with pytest.raises(RetrainError) as info:
            run_sync(config, console=QUIET)
        assert "broken_reward" in str(info.value), f"the error does not name the failing reward: {info.value}"
        run_dirs = list((tmp_path / "runs").iterdir())
        assert len(run_dirs) == 1
        summary = json.loads((run_dirs[0] / "summary.json").read_text())
        assert summary["status"] == "failed"
        _assert_no_process_left(before, self.process_grace_seconds)

