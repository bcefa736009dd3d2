"""Start verl's real v1 GRPO trainer (Ray single controller, FSDP2 actor) on a retrain config.

The run starts its own local Ray (`ray.init` inside verl's `run_ppo`) and shuts it down by its own
handle when training ends, fails or is interrupted. verl's per-step metrics come through its file
logger; a watcher thread turns each line into a neutral record, adding the per-component means
from the Scorer breakdowns the reward workers appended since the previous step.
"""

from __future__ import annotations

import _thread
import contextlib
import importlib
import importlib.util
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from retrain.backends.verl.data import write_parquet
from retrain.backends.verl.translate import algorithm_overrides, backend_option_overrides, compose, validate
from retrain.core.backend import TrainResult
from retrain.core.batch import batch_plan
from retrain.core.config import TrainingConfig
from retrain.core.errors import BackendError, ConfigError, ConfigIssue, ModelError, RewardError, TrainingFailed
from retrain.core.metrics import episode_metrics
from retrain.core.progress import ProgressReporter
from retrain.core.rollout import EpisodeStats, RewardBreakdown
from retrain.core.run_dir import RunDir
from retrain.core.scoring import Scorer
from retrain.data import training_rows
from retrain.models import resolve_model

CPU_PLUGIN = "retrain.backends.verl.cpu"
REWARD_ERRORS = "reward_errors.log"
AGENT_NAME = "retrain_env"  # retrain's agent loop (environment.py), registered per run in agent_loops.yaml


def agent_loops_yaml(config_path: str) -> str:
    """The agent-loop registry file verl reads in each worker (`rollout.agent.agent_loop_config_path`)."""
    target = "retrain.backends.verl.environment.RetrainAgentLoop"
    return f"- name: {AGENT_NAME}\n  _target_: {target}\n  config_path: '{config_path}'\n"

# Dynamic sampling: batches' worth of completions scored without a step before the run says it may not end.
STALL_BATCHES = 10

# verl log name -> neutral name (definitions: retrain.core.metrics.DEFINITIONS).
VERL_TO_NEUTRAL = {
    "critic/score/mean": "reward/mean",
    "actor/loss": "loss",  # the whole objective (policy loss + KL term - entropy bonus), as TRL's `loss`
    "actor/grad_norm": "grad_norm",
    "actor/lr": "learning_rate",
    "response_length/mean": "completion_length/mean",
    "response_length/max": "completion_length/max",
    "actor/pg_clipfrac": "clip_ratio",
    "critic/vf_loss": "critic/value_loss",  # PPO's critic (algorithm.advantage: gae)
}
# verl aggregates these by actor.loss_agg_mode; the neutral ones are token means over the batch, which they are
# only under token-mean (loss_aggregation: dapo). Otherwise they are left out rather than reported differently.
VERL_TOKEN_MEANS = {"actor/kl_loss": "kl", "actor/entropy": "entropy"}


def machine_overrides(config: TrainingConfig) -> list[str]:
    """What the hardware needs: on GPUs verl's vLLM rollout, on a CPU the `hf` rollout and FSDP2 on gloo.
    (Run-specific paths are added by `run_overrides`; `retrain translate` shows these.)"""
    overrides = [
        f"actor_rollout_ref.model.path={config.model.name}",
        "trainer.total_epochs=1000000",  # the run ends at algorithm.max_steps (total_training_steps)
        "reward.custom_reward_function.name=compute_score",
        "trainer.logger=[file]",
    ]
    critic = config.algorithm.critic
    if critic is not None and critic.model is None:
        overrides.append(f"critic.model.path={config.model.name}")  # the critic starts from the policy's model
    gpus = config.resources.nodes * config.resources.gpus_per_node
    micro = batch_plan(config, gpu=gpus > 0).micro  # the same micro-batch TRL gets (retrain.core.batch)
    if critic is not None:
        overrides.append(f"critic.ppo_micro_batch_size_per_gpu={micro}")
    if gpus == 0:
        return overrides + _cpu_overrides(config, micro)
    overrides += [
        "actor_rollout_ref.rollout.name=vllm",
        f"actor_rollout_ref.rollout.tensor_model_parallel_size={config.rollout.tensor_parallel_size}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={micro}",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={micro}",
        f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={micro}",
    ]
    if config.rollout.gpu_memory_utilization is not None:
        overrides.append(f"actor_rollout_ref.rollout.gpu_memory_utilization={config.rollout.gpu_memory_utilization}")
    if config.model.dtype in GPU_DTYPES:
        fsdp_dtype, rollout_dtype = GPU_DTYPES[config.model.dtype]
        overrides += [
            f"+actor_rollout_ref.actor.fsdp_config.mixed_precision={{param_dtype:{fsdp_dtype},"
            f"reduce_dtype:fp32,buffer_dtype:fp32}}",
            f"actor_rollout_ref.rollout.dtype={rollout_dtype}",
        ]
    return overrides


# model.dtype on GPUs -> (FSDP mixed-precision compute dtype, vLLM dtype). "auto" keeps verl's
# defaults (fp32 master weights, bf16 compute, bf16 rollout); "bfloat16" is the same thing.
GPU_DTYPES = {"float32": ("fp32", "float32"), "float16": ("fp16", "float16")}


def _cpu_overrides(config: TrainingConfig, micro: int) -> list[str]:
    overrides = [
        "trainer.device=cpu",
        "data.dataloader_num_workers=0",
        "actor_rollout_ref.model.use_remove_padding=false",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "actor_rollout_ref.actor.strategy=fsdp2",
        "actor_rollout_ref.actor.use_torch_compile=false",
        "actor_rollout_ref.actor.fsdp_config.use_torch_compile=false",
        "+actor_rollout_ref.actor.fsdp_config.mixed_precision={param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={micro}",
        "actor_rollout_ref.rollout.name=hf",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={micro}",
        "actor_rollout_ref.rollout.free_cache_engine=false",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={micro}",
        "reward.num_workers=1",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
    ]
    if config.model.lora is not None:
        overrides.append("actor_rollout_ref.model.lora.merge=true")  # the rollout server takes merged weights
    if config.algorithm.critic is not None:  # the critic's FSDP worker, as the actor's on a CPU
        overrides += [
            "critic.strategy=fsdp2",
            "critic.model.use_remove_padding=false",
            "+critic.model.override_config.attn_implementation=sdpa",
            "+critic.fsdp.mixed_precision={param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}",
        ]
    return overrides


def run_overrides(
    config: TrainingConfig, run_dir: RunDir, model_path: str, env: dict[str, str], prompt_length: int
) -> list[str]:
    """Where this run's files are, the resolved model, and Ray: an existing cluster at
    `resources.ray_address`, else a local one (on a CPU, with one stand-in GPU for verl's resource pool).
    With an environment, verl runs retrain's agent loop (environment.py) for every row."""
    parquet = run_dir.path / "verl" / "train.parquet"
    env_vars = ",".join(f"{key}:'{value}'" for key, value in env.items())
    overrides = [
        f"data.train_files={parquet}",
        f"data.val_files={parquet}",
        f"actor_rollout_ref.model.path={model_path}",
        *([f"critic.model.path={model_path}"] if config.algorithm.critic is not None
          and config.algorithm.critic.model is None else []),
        f"reward.custom_reward_function.path={Path(__file__).with_name('rewards.py')}",
        "reward.reward_manager.source=importlib",
        "reward.reward_manager.name=RetrainRewardManager",
        f"reward.reward_manager.module.path={Path(__file__).with_name('rewards.py')}",
        f"+reward.custom_reward_function.reward_kwargs={{config_path:'{run_dir.path / 'config.yaml'}',"
        f"breakdowns_path:'{run_dir.path / 'verl' / 'breakdowns.jsonl'}',"
        f"errors_path:'{_reward_errors_file(run_dir)}'}}",
        f"trainer.default_local_dir={run_dir.checkpoints_dir}",
        f"trainer.resume_mode={'auto' if run_dir.latest_checkpoint() else 'disable'}",
        f"+ray_kwargs.ray_init.runtime_env.env_vars={{{env_vars}}}",
    ]
    if config.data.max_prompt_tokens is None:  # the longest prompt there is: verl never has one to cut
        overrides.append(f"data.max_prompt_length={prompt_length}")
    if config.environment is not None:
        overrides += [
            f"actor_rollout_ref.rollout.agent.agent_loop_config_path={run_dir.path / 'verl' / 'agent_loops.yaml'}",
            f"actor_rollout_ref.rollout.agent.default_agent_loop={AGENT_NAME}",
        ]
    if config.resources.ray_address is not None:
        return overrides + [f"+ray_kwargs.ray_init.address='{config.resources.ray_address}'"]
    overrides += ["+ray_kwargs.ray_init.include_dashboard=false", "+ray_kwargs.ray_init.log_to_driver=false",
                  "+ray_kwargs.ray_init.logging_level=30"]  # WARNING: no "Started a local Ray instance"
    if config.resources.gpus_per_node == 0:
        overrides += ["ray_kwargs.ray_init.num_cpus=16", "+ray_kwargs.ray_init.num_gpus=1"]
    return overrides


def _environment(run_dir: RunDir, cpu: bool) -> dict[str, str]:
    paths = [os.getcwd(), *[p for p in sys.path if p and "site-packages" not in p]]
    env = {
        "VERL_FILE_LOGGER_PATH": str(run_dir.path / "verl" / "metrics.raw.jsonl"),
        "VERL_LOGGING_LEVEL": "WARN",
        "TOKENIZERS_PARALLELISM": "false",
        # On a CPU the actor and the rollout take turns (sync trainer), so each may use every core
        # (measured with SmolLM2-135M on 2 cores: 65 s a step instead of 78 s with one thread).
        "OMP_NUM_THREADS": str(os.cpu_count() or 1) if cpu else "1",
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0"),
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths + os.environ.get("PYTHONPATH", "").split(os.pathsep))),
        "RETRAIN_CACHE": os.environ.get("RETRAIN_CACHE", ""),
    }
    if cpu:
        # Plugins the user loads into verl (VERL_USE_EXTERNAL_MODULES) come after the CPU platform.
        theirs = [m for m in os.environ.get("VERL_USE_EXTERNAL_MODULES", "").split(",") if m and m != CPU_PLUGIN]
        env |= {
            "VERL_PLATFORM": "cpu",
            "VERL_USE_EXTERNAL_MODULES": ",".join([CPU_PLUGIN, *theirs]),
            "VERL_ENGINE_DEVICE": "cuda",  # the FSDP engine is registered under "cuda"; the platform makes it CPU
        }
    return {key: value for key, value in env.items() if value}


class MetricsWatcher(threading.Thread):
    """Turns verl's file-logger lines into neutral records as they appear."""

    def __init__(
        self, run_dir: RunDir, progress: ProgressReporter, scorer: Scorer, first_step: int,
        samples_per_step: int, batch_size: int, token_mean_losses: bool = True, group_size: int = 1,
    ):
        super().__init__(daemon=True)
        self.run_dir, self.progress, self.scorer = run_dir, progress, scorer
        self.samples_per_step = samples_per_step
        # verl's sync trainer scores exactly prompts x group rollouts per step, in step order, so the
        # breakdowns of step N are the N-th chunk of that size (the next step's may already be there).
        # With dynamic sampling (algorithm.filter_groups) the step also scored the groups it dropped: verl
        # logs how many, and they are the step's groups whose totals all agree (verl's own test).
        self.batch_size, self.group_size = batch_size, group_size
        self._pending: list[dict[str, Any]] = []
        self.raw = run_dir.path / "verl" / "metrics.raw.jsonl"
        self.breakdowns = run_dir.path / "verl" / "breakdowns.jsonl"
        self.first_step = first_step
        self.token_mean_losses = token_mean_losses
        self.learning_rate_at: Any = None  # step (0-based) -> the rate verl's scheduler gives its updates
        self.stop_event = threading.Event()
        self._raw_offset = 0
        self._breakdown_offset = self.breakdowns.stat().st_size if self.breakdowns.exists() else 0
        self.started_at = time.monotonic()
        self.last_step = first_step
        earlier = run_dir.metrics() if run_dir.metrics_path.exists() else []
        earlier = [record for record in earlier if record.get("step", 0) <= first_step]
        self.tokens_so_far = float(earlier[-1].get("tokens") or 0) if earlier else 0.0  # a resumed run counts on

    # Set by `train` when rewards.on_error is 'fail' and it runs in the main thread: verl drops a
    # trajectory whose reward raised and trains on the rest, so the watcher stops the run itself at
    # the first reward failure (interrupting the main thread, the one waiting on verl).
    errors_offset: int | None = None
    reward_failure: str | None = None
    dynamic_sampling = False  # set by `train` (algorithm.dynamic_sampling): the groups kept and dropped are logged
    _stall_warned = False

    def run(self) -> None:
        while not self.stop_event.wait(0.5):
            self.poll()
            if self.errors_offset is not None and (errors := _new_reward_errors(self.run_dir, self.errors_offset)):
                self.reward_failure = errors[0]
                _thread.interrupt_main()  # raises KeyboardInterrupt in `train`, which reports the failure
                return
        self.poll()

    def _new_lines(self, path: Path, offset: int) -> tuple[list[str], int]:
        if not path.exists():
            return [], offset
        with path.open("rb") as file:
            file.seek(offset)
            data = file.read()
        complete = data[: data.rfind(b"\n") + 1]
        return complete.decode().splitlines(), offset + len(complete)

    def poll(self) -> None:
        lines, self._raw_offset = self._new_lines(self.raw, self._raw_offset)
        for line in lines:
            entry = json.loads(line)
            if entry.get("step", 0) <= self.first_step:
                continue
            self._read_breakdowns()
            dropped = sum(int(entry["data"].get(f"training/filter_groups/{kind}", 0))
                          for kind in ("evicted_samples", "discarded_surplus_samples"))
            scored = self.batch_size + dropped * self.group_size
            samples, self._pending = self._pending[:scored], self._pending[scored:]
            if dropped:
                samples = kept_groups(samples, self.batch_size // self.group_size)
            self._write(entry["step"], entry["data"], samples, dropped)
        if self.dynamic_sampling:
            self._read_breakdowns()
            self._warn_if_no_batch_fills()

    def _read_breakdowns(self) -> None:
        breakdown_lines, self._breakdown_offset = self._new_lines(self.breakdowns, self._breakdown_offset)
        self._pending += [json.loads(b) for b in breakdown_lines]

    def _warn_if_no_batch_fills(self) -> None:
        """verl's dynamic sampling generates until the step has prompts_per_step groups whose rewards differ, with
        no limit: say so once when many batches' worth were scored without a step."""
        if self._stall_warned or len(self._pending) < STALL_BATCHES * self.batch_size:
            return
        self._stall_warned = True
        self.progress.note(
            f"dynamic sampling has scored {len(self._pending)} completions since the last step without filling a "
            f"batch: in most groups every completion got the same reward, and verl keeps generating until "
            f"{self.batch_size // self.group_size} groups differ (it has no limit). Give partial credit (a format "
            "reward), easier prompts, or set algorithm.dynamic_sampling: false"
        )

    def _write(self, step: int, data: dict[str, Any], samples: list[dict[str, Any]], dropped: int = 0) -> None:
        record: dict[str, Any] = {"step": step}
        if self.dynamic_sampling:
            record["dynamic_sampling/groups_kept"] = self.batch_size // self.group_size
            record["dynamic_sampling/groups_dropped"] = dropped
        for verl_name, neutral in VERL_TO_NEUTRAL.items():
            if verl_name in data:
                record[neutral] = data[verl_name]
        if self.learning_rate_at is not None and "learning_rate" in record:
            # verl logs the rate after its scheduler stepped (the next step's); the neutral record has the rate
            # this step's updates used, as TRL logs it.
            record["learning_rate"] = self.learning_rate_at(step - 1)
        if self.token_mean_losses:
            record.update({neutral: data[name] for name, neutral in VERL_TOKEN_MEANS.items() if name in data})
        # step_seconds leaves the checkpoint out (verl times it inside the step; TRL after it).
        seconds = data.get("timing_s/step")
        if seconds is not None:
            seconds -= data.get("timing_s/save_checkpoint", 0.0)
        record["step_seconds"] = seconds
        breakdowns = [RewardBreakdown.from_dict(s["breakdown"]) for s in samples]
        summary = self.scorer.summarize(breakdowns)
        record["reward/std"] = summary.get("reward/std")
        record["reward/zero_spread_groups"] = zero_spread_share(breakdowns, [_group_of(s) for s in samples])
        record.update({k: v for k, v in summary.items() if not k.startswith("reward/")})
        record.update(episode_metrics([EpisodeStats(**s["episode"]) for s in samples if s.get("episode")]))
        masks = [s["trainable_mask"] for s in samples if "trainable_mask" in s]
        if masks and len(masks) == len(samples):  # episodes: the model's own tokens, not the tools' (as on TRL)
            lengths = [sum(mask) for mask in masks]
            record["completion_length/mean"] = sum(lengths) / len(lengths)
            record["completion_length/max"] = max(lengths)
        seconds = data.get("timing_s/step")
        tokens = data.get("perf/total_num_tokens")
        record["tokens_per_second"] = tokens / seconds if tokens and seconds else None
        if tokens is not None:  # as TRL's num_tokens: the prompt and completion tokens (no padding) so far
            self.tokens_so_far += tokens
            record["tokens"] = self.tokens_so_far
        # The actor's peak: GPU memory allocated on GPUs, the process's peak RSS on a CPU (cpu.py). Not
        # verl's cpu_memory_used_gb, which is the whole machine's used memory.
        record["peak_memory_gb"] = data.get("actor/perf/max_memory_allocated_gb")
        record["elapsed_seconds"] = time.monotonic() - self.started_at
        self.run_dir.write_metrics(record)
        if self.samples_per_step:
            self.run_dir.write_samples(step, samples[: self.samples_per_step])
        self.progress.step(record)
        self.last_step = step


def _group_of(sample: dict[str, Any]) -> str:
    return str(sample.get("group") or sample["breakdown"].get("rollout_id", ""))


def kept_groups(samples: list[dict[str, Any]], groups: int) -> list[dict[str, Any]]:
    """The samples of the groups a dynamic-sampling step trained on: those whose totals do not all agree
    (verl's replay buffer drops the others), the first `groups` of them in scoring order."""
    by_group: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        by_group.setdefault(_group_of(sample), []).append(sample)
    spread = [members for members in by_group.values()
              if len(members) > 1 and statistics.pstdev([m["breakdown"]["total"] for m in members]) > 0]
    return [sample for members in spread[:groups] for sample in members]


def zero_spread_share(breakdowns: list[RewardBreakdown], groups: list[str] | None = None) -> float | None:
    """The share of the step's groups whose completions all got the same total (TRL's frac_reward_zero_std:
    the group's reward std within 1e-8 of 0). A group is one generation of one prompt (`groups`, verl's uid);
    without those, one prompt row: its rollouts share `row<index>`."""
    totals: dict[str, list[float]] = {}
    for i, breakdown in enumerate(breakdowns):
        totals.setdefault(groups[i] if groups else breakdown.rollout_id, []).append(breakdown.total)
    if not totals:
        return None
    return sum(statistics.pstdev(values) <= 1e-8 for values in totals.values()) / len(totals)


def train(config: TrainingConfig, run_dir: RunDir, progress: ProgressReporter) -> TrainResult:
    import ray

    checkpoint = run_dir.prepare_resume()  # verl's resume_mode 'auto' then finds it through its marker
    first_step = RunDir.checkpoint_step(checkpoint) if checkpoint else 0
    (run_dir.path / "verl").mkdir(exist_ok=True)
    raw_metrics = run_dir.path / "verl" / "metrics.raw.jsonl"
    if raw_metrics.exists():  # verl's file logger truncates it on every start: keep the earlier run's lines
        raw_metrics.replace(raw_metrics.with_name(f"metrics.raw.until-step-{first_step}.jsonl"))
    model_path = resolve_model(config.model.name, config.model.revision)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except OSError as exc:
        raise ModelError(f"cannot load the tokenizer of model '{config.model.name}': {exc}") from None
    rows, longest = training_rows(config, tokenizer, progress)
    write_parquet(rows, run_dir.path / "verl" / "train.parquet")
    prompt_length = longest
    if config.environment is not None:
        (run_dir.path / "verl" / "agent_loops.yaml").write_text(agent_loops_yaml(str(run_dir.path / "config.yaml")))
        prompt_length = max(longest, episode_prompt_length(config, rows, model_path))
    cpu = config.resources.gpus_per_node == 0
    if not cpu and config.resources.ray_address is None and importlib.util.find_spec("vllm") is None:
        raise BackendError(
            "verl on GPUs rolls out with vLLM, which is not installed: `pip install 'retrain[verl,vllm]'` "
            "(see docs/backends.md), or set resources.gpus_per_node: 0 to run on the CPU"
        )
    if config.resources.ray_address is not None:
        _check_reachable(config.resources.ray_address)
    env = _environment(run_dir, cpu)
    os.environ.update(env)
    _quiet_console(local_ray=config.resources.ray_address is None)
    if cpu:
        # verl is already imported in this process (validation composed its config), so the plugins that
        # VERL_USE_EXTERNAL_MODULES loads in Ray's workers are imported here by hand.
        for module in env["VERL_USE_EXTERNAL_MODULES"].split(","):
            importlib.import_module(module)
    overrides = (
        algorithm_overrides(config)
        + machine_overrides(config)
        + run_overrides(config, run_dir, model_path, env, prompt_length)
        + backend_option_overrides(config)
    )
    composed = compose(overrides)
    validate(composed)
    (run_dir.path / "verl" / "composed.yaml").write_text(_to_yaml(composed), encoding="utf-8")

    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo

    watcher = MetricsWatcher(run_dir, progress, Scorer.from_config(config), first_step,
                             config.training.samples_per_step,
                             config.algorithm.prompts_per_step * config.algorithm.group_size,
                             token_mean_losses=config.algorithm.loss_aggregation == "dapo",
                             group_size=config.algorithm.group_size)
    watcher.dynamic_sampling = config.algorithm.dynamic_sampling
    watcher.learning_rate_at = learning_rate_schedule(composed)
    errors_seen = _reward_errors_file(run_dir).stat().st_size if _reward_errors_file(run_dir).exists() else 0
    if config.rewards.on_error == "fail" and threading.current_thread() is threading.main_thread():
        watcher.errors_offset = errors_seen  # else (`await run()`: a worker thread) it fails when verl returns
    progress.start(config.algorithm.max_steps, completed=first_step)
    watcher.start()
    try:
        # verl prints its Ray settings and more to stdout; retrain's console is stderr, the rest is kept.
        with (run_dir.path / "verl" / "driver.log").open("a") as log, contextlib.redirect_stdout(log):
            run_ppo(composed, task_runner_class=TaskRunnerV1)
        if config.rewards.on_error == "fail" and (errors := _new_reward_errors(run_dir, errors_seen)):
            raise RewardError(errors[0])  # failed on some completions only: verl trained on the rest
    except KeyboardInterrupt:
        if watcher.reward_failure is not None:
            raise RewardError(watcher.reward_failure) from None
        raise
    except RewardError:
        raise
    except Exception as exc:
        if errors := _new_reward_errors(run_dir, errors_seen):
            raise RewardError(errors[0]) from exc  # the cause, not verl's "no materializable trajectories"
        if config.resources.ray_address is not None and _is_auth_failure(exc):
            raise BackendError(
                f"the Ray cluster at '{config.resources.ray_address}' refused this run's token; with an explicit "
                "address Ray sends one only when RAY_AUTH_MODE=token is set, with the cluster's token in "
                "RAY_AUTH_TOKEN or ~/.ray/auth_token (https://docs.ray.io/en/latest/ray-security/token-auth.html)"
            ) from exc
        raise
    finally:
        watcher.stop_event.set()
        watcher.join(timeout=30)
        progress.stop()
        if ray.is_initialized():
            # A local Ray this run started stops with every actor in it; on a cluster given by
            # resources.ray_address this disconnects, which ends this run's actors and nothing else.
            ray.shutdown()
    last_checkpoint = run_dir.latest_checkpoint()
    final_model = None
    if last_checkpoint is not None and RunDir.checkpoint_step(last_checkpoint) == watcher.last_step:
        final_model = export_model(last_checkpoint, run_dir.model_dir, run_dir.path / "verl" / "driver.log")
    return TrainResult(
        steps_completed=watcher.last_step, final_model_dir=final_model, last_checkpoint=last_checkpoint
    )


def learning_rate_schedule(composed: Any) -> Any:
    """The learning rate of each step's updates, by verl's own scheduler functions on the composed optimizer
    config (as its FSDP engine builds them), stepped once per step as verl steps them."""
    import torch
    from verl.utils.torch_functional import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

    optim = composed.actor_rollout_ref.actor.optim
    total = composed.trainer.total_training_steps
    warmup = optim.lr_warmup_steps if optim.lr_warmup_steps > 0 else int(optim.lr_warmup_steps_ratio * total)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=optim.lr)
    if optim.lr_scheduler_type == "cosine":
        scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, total, min_lr_ratio=optim.min_lr_ratio,
                                                    num_cycles=optim.num_cycles,
                                                    zero_indexed_step=optim.zero_indexed_step)
    else:
        scheduler = get_constant_schedule_with_warmup(optimizer, warmup)
    rates = [optim.lr * factor(step) for factor in scheduler.lr_lambdas for step in range(total + 1)]

    def rate(step: int) -> float:
        return rates[min(step, total)]

    return rate


def episode_prompt_length(config: TrainingConfig, rows: list[dict[str, Any]], model_path: str) -> int:
    """verl pads (and would cut) every prompt to data.max_prompt_length. An episode's prompt is what its
    environment's `reset` returns (a game's board, the row's prompt) with the tools offered, so the width is
    measured from that for every row (MCP servers are started briefly to list their tools), rounded up to a
    multiple of 64; longer than data.max_prompt_tokens is an error naming the row."""
    from transformers import AutoTokenizer

    from retrain.environments import longest_opening
    from retrain.environments.episode import HFChatTokens

    assert config.environment is not None
    tokens = HFChatTokens(AutoTokenizer.from_pretrained(model_path), config.data.chat_template_kwargs)
    try:
        longest = longest_opening(config.environment, rows, tokens, config.data.max_prompt_tokens)
    except ValueError as exc:
        raise ConfigError([ConfigIssue("data.max_prompt_tokens", None, str(exc))]) from None
    return -(-longest // 64) * 64


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def _quiet_console(local_ray: bool) -> None:
    """The console is retrain's progress: verl's platform notice and, for the private local Ray a run
    starts (and stops), Ray's notice that token authentication is on, are not news to a user."""
    logging.getLogger("verl.plugin.platform.platform_manager").setLevel(logging.WARNING)
    token_notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if local_ray and not any(isinstance(f, _DropMessage) for f in token_notice.filters):
        token_notice.addFilter(_DropMessage("Token authentication is enabled for this Ray cluster"))


def _check_reachable(address: str) -> None:
    """Ray retries an unreachable cluster for minutes; a typo in the address should cost seconds."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and other forms Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise BackendError(
            f"no Ray cluster answers at resources.ray_address '{address}' ({exc.strerror or exc}); start one "
            "with `ray start --head` and use the address it prints, or remove ray_address for a local Ray"
        ) from None


def _is_auth_failure(exc: BaseException | None) -> bool:
    from ray.exceptions import AuthenticationError

    while exc is not None:
        if isinstance(exc, AuthenticationError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _reward_errors_file(run_dir: RunDir) -> Path:
    return run_dir.path / "verl" / REWARD_ERRORS


def _new_reward_errors(run_dir: RunDir, offset: int) -> list[str]:
    """The reward failures the reward workers wrote during this run (a resumed run skips earlier ones)."""
    path = _reward_errors_file(run_dir)
    if not path.exists():
        return []
    with path.open("rb") as file:
        file.seek(offset)
        return file.read().decode(errors="replace").splitlines()


def export_model(checkpoint: Path, target: Path, log: Path) -> Path:
    """verl's FSDP shards -> a Hugging Face model folder, with verl's own model merger (in a child
    process, whose output goes to the log). With LoRA, `target` holds the base weights and
    `target/lora_adapter` the trained adapter (load it with peft). verl's merger writes bf16."""
    command = [sys.executable, "-m", "verl.model_merger", "merge", "--backend", "fsdp",
               "--local_dir", str(checkpoint / "actor"), "--target_dir", str(target)]
    with log.open("a") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise TrainingFailed(
            f"verl's model merger could not export {checkpoint} to {target} (exit {done.returncode}); "
            f"see {log}. The checkpoint itself is intact."
        )
    return target


def _to_yaml(composed: Any) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(composed)
