"""End-to-end step parity: one retrain config, the same completions, each backend's real update.

The same prompts and completions (fixed token ids), scored by retrain's Scorer, go through:

- TRL: the `GRPOTrainer` retrain builds (`retrain.backends.trl.launch.build_trainer`), trained with its own
  `trainer.train()` for the config's steps. The completions enter through TRL's extension point for
  generation, `rollout_func` (prompt_ids, completion_ids, logprobs, TRL 1.16's contract); everything after
  it is TRL's: rewards from the Scorer through retrain's reward function, TRL's advantages, old and
  reference log-probs, mini-batch shuffling, gradient accumulation, clipping, AdamW and the scheduler.
- verl: verl 0.9.1's own actor worker, `ActorRolloutRefWorker(config.actor_rollout_ref, role="actor")`,
  built by `init_model()` (FSDP2 on gloo, world size 1, no Ray), from the config retrain composes
  (`algorithm_overrides + machine_overrides`, `compose`, `validate`, then what the trainer does before
  building workers). Each step runs what verl's v1 trainer runs (`PPOTrainer._step_once`): the old
  log-probs (`compute_log_prob`), with LoRA and a KL term the reference log-probs (the actor without its
  adapter, `no_lora_adapter`), the advantages (`compute_advantage_for_multi_trajectories`, the GRPO
  estimator on the Scorer totals of the same completions) and `update_actor`. The batch is packed into
  the TensorDict layout TransferQueue hands the worker (TQ's own `_pack_field_values`), with the
  trainer's `extra_info`.

Only the trainer side of verl is hand-copied (the extra_info and the TQ layout, from
verl/trainer/ppo/v1/trainer_base.py); `_balance_batch` is skipped (with one data-parallel rank its
partition keeps the order).

What is read back, per run: the trained parameters before and after, the pre-clip gradient norm of
every optimizer update (TRL: `Trainer._clip_grad_norm`'s return, observed; verl: the worker's per-update
`grad_norm` metric), and per step the loss as each library logs it (TRL's `loss`: policy loss + beta x KL,
mean over the step's updates; verl's `actor/loss`: the same objective, also averaged over updates, and
`actor/pg_loss` without the KL term).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# ---------------------------------------------------------------------------------------------------------
# The scripted batch: two prompts, four completions each, and the reward of every completion text.

PROMPTS = ["Name a colour.", "Count to three."]
GROUP = 4
MAX_TOKENS = 16
# Completion text -> reward. Per group the (Bessel) std of the rewards is 1.29 and 1.75: TRL's advantage
# divides by std + 1e-4, verl's by std + 1e-6, so the advantages differ by a factor 1 - 7.7e-5 at most.
# (Group scaling is retrain's default; with reward_scaling none the advantages would be equal.)
SCRIPT: dict[str, list[tuple[str, float]]] = {
    PROMPTS[0]: [("Blue, like the sky at noon.", 3.0), ("Red.", 0.0),
                 ("Green is the colour of grass and of leaves in spring.", 1.0), ("I like yellow", 2.0)],
    PROMPTS[1]: [("One, two, three.", 4.0), ("1 2 3", 2.5), ("Three two one go", 0.0),
                 ("one two three four five six", 1.0)],
}
REWARDS = {text: reward for group in SCRIPT.values() for text, reward in group}
TRUNCATED = {"one two three four five six"}  # no end-of-sequence token: cut at the length limit
REWARD_BOUNDS = [0.0, 4.0]


def scripted_reward(completion: str) -> float:
    """The reward of a scripted completion (referenced as 'tests.parity.step:scripted_reward')."""
    return REWARDS[completion]


def config_data(folder: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """The retrain config of a case: the scripted prompts and reward, on a CPU, one step; `sections`
    update the named sections (e.g. algorithm={"loss_aggregation": "dapo"})."""
    data: dict[str, Any] = {
        "model": {"name": "retrain:tiny"},
        "example_prompts": list(PROMPTS),
        "rewards": {"functions": [{"function": "tests.parity.step:scripted_reward", "bounds": REWARD_BOUNDS}]},
        "algorithm": {"group_size": GROUP, "prompts_per_step": len(PROMPTS), "max_steps": 1,
                      "learning_rate": 1e-3, "max_completion_tokens": MAX_TOKENS, "clip_range": 0.2},
        # AdamW's epsilon at 1e-3 instead of 1e-8: on its first update AdamW moves each weight by
        # lr x g / (|g| + eps), which with eps 1e-8 is lr x sign(g) for almost every weight. That would hide an
        # error in the gradient's scale, and would blow float32 noise in gradient entries near zero (1e-10)
        # up to a visible share of the update (measured: 2% of it). With eps 1e-3 most updates are
        # proportional to the gradient (|g| < 1e-3 for most weights of this model).
        "optimizer": {"eps": 1e-3},
        "training": {"output_dir": str(folder), "samples_per_step": 0},
        "resources": {"gpus_per_node": 0},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return data


# ---------------------------------------------------------------------------------------------------------
# Results


@dataclass
class Generation:
    """One step's batch as TRL's rollout_func returned it, in TRL's order (verl gets the same order)."""

    prompts: list[list[dict[str, str]]]  # the chat messages of each row
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    texts: list[str]
    group_ids: list[int]  # which prompt each row answers (verl's uid)
    rng_state: torch.Tensor  # torch's RNG when TRL generated: its mini-batch shuffle draws from it next


@dataclass
class StepResult:
    before: dict[str, torch.Tensor]  # trained parameters, by name
    after: dict[str, torch.Tensor]
    grad_norms: list[float]  # pre-clip global norm of every optimizer update, in order
    losses: list[float]  # per step: the objective (policy loss + beta x KL), mean over the step's updates
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def update(self) -> float:
        """The largest change of any trained weight."""
        return max((self.after[k] - self.before[k]).abs().max().item() for k in self.after)


@dataclass
class Comparison:
    weights: float  # max |W_trl - W_verl| after the run, over all trained parameters, / the largest update
    grad_norm: float  # max relative difference of the per-update pre-clip gradient norms
    loss: float  # max absolute difference of the per-step losses
    update: float  # the largest weight update (TRL)
    loss_scale: float = 0.0  # the largest |loss| (TRL): the loss tolerance is absolute + relative to it

    def within(self, weights: float, grad_norm: float, loss: float) -> bool:
        """`loss` is both the absolute and the relative tolerance (as torch.allclose's atol and rtol): the
        advantage epsilon's relative difference shows in a loss that scales with the advantage (cispo's
        -A x log-prob, about 1.7 here) where it is invisible in an absolute one of about 0.1."""
        return (self.weights <= weights and self.grad_norm <= grad_norm
                and self.loss <= loss * (1 + self.loss_scale))


def compare(trl: StepResult, verl: StepResult) -> Comparison:
    """How far verl's run is from TRL's (a count of updates or steps that differs compares as infinitely far)."""
    assert trl.before.keys() == verl.before.keys(), (sorted(trl.before)[:5], sorted(verl.before)[:5])
    start = max((trl.before[k] - verl.before[k]).abs().max().item() for k in trl.before)
    assert start == 0.0, f"the runs did not start from the same weights (max difference {start})"
    update = trl.update
    weights = max((trl.after[k] - verl.after[k]).abs().max().item() for k in trl.after) / update
    grad = math.inf
    if len(trl.grad_norms) == len(verl.grad_norms):
        grad = max(abs(a - b) / abs(a) for a, b in zip(trl.grad_norms, verl.grad_norms, strict=True))
    loss = math.inf
    if len(trl.losses) == len(verl.losses):
        loss = max(abs(a - b) for a, b in zip(trl.losses, verl.losses, strict=True))
    return Comparison(weights, grad, loss, update, max((abs(a) for a in trl.losses), default=0.0))


def trained_parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters the optimizer updates, full (DTensors gathered), float32 copies."""
    from torch.distributed.tensor import DTensor

    out = {}
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        value = param.detach()
        if isinstance(value, DTensor):
            value = value.full_tensor()
        out[name] = value.to("cpu", torch.float32).clone()
    return out


def optimizer_moments(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """AdamW's first moment of every trained parameter (after one update: (1 - beta1) x the clipped gradient)."""
    from torch.distributed.tensor import DTensor

    out = {}
    for name, param in module.named_parameters():
        state = optimizer.state.get(param)
        if state and "exp_avg" in state:
            value = state["exp_avg"]
            out[name] = (value.full_tensor() if isinstance(value, DTensor) else value).detach().float().clone()
    return out


def lora_adapter(names_shapes: dict[str, torch.Size], seed: int = 0) -> dict[str, torch.Tensor]:
    """Initial LoRA weights for both backends: A and B both non-zero (an adapter already trained a little), so
    that A gets a gradient on the first update and the policy starts away from the reference (the base model),
    which gives the KL term a gradient from the start."""
    generator = torch.Generator().manual_seed(seed)
    adapter = {}
    for name in sorted(names_shapes):
        shape = names_shapes[name]
        scale = 1 / math.sqrt(shape[1]) if ".lora_A." in name else 0.2
        adapter[name] = (torch.rand(shape, generator=generator) * 2 - 1) * scale
    return adapter


@torch.no_grad()
def load_adapter(module: torch.nn.Module, adapter: dict[str, torch.Tensor]) -> None:
    from torch.distributed.tensor import DTensor, distribute_tensor

    params = dict(module.named_parameters())
    assert set(adapter) == {n for n, p in params.items() if p.requires_grad}, "adapter names differ"
    for name, value in adapter.items():
        param = params[name]
        if isinstance(param, DTensor):
            value = distribute_tensor(value.to(param.dtype), param.device_mesh, param.placements)
        param.copy_(value)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one CPU thread. The model is tiny, and verl's log-probs are a loop of small ops (one
    log-softmax per token): with two threads on a busy two-core machine every one of them waits for the
    other thread (measured: 43 s for a verl run instead of 11 s). Numerics: float32 sums in another order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------------
# Tokens


def completion_ids(tokenizer, text: str) -> list[int]:  # type: ignore[no-untyped-def]
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=True) == text  # the Scorer sees exactly `text`
    return ids if text in TRUNCATED else ids + [tokenizer.eos_token_id]


class ScriptedRollout:
    """TRL's `rollout_func`: for each prompt row (TRL repeats each prompt group_size times, consecutively),
    the next scripted completion, as token ids. Records each generation for the verl run."""

    def __init__(self, tokenizer):  # type: ignore[no-untyped-def]
        self.tokenizer = tokenizer
        self.generations: list[Generation] = []

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        rng_state = torch.get_rng_state()
        seen: dict[str, int] = {}
        prompt_ids, ids, texts, groups = [], [], [], []
        for messages in prompts:
            question = messages[-1]["content"]
            index = seen.get(question, 0)
            seen[question] = index + 1
            text = SCRIPT[question][index][0]
            prompt_ids.append(list(self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=False)))
            ids.append(completion_ids(self.tokenizer, text))
            texts.append(text)
            groups.append(PROMPTS.index(question))
        assert all(count == GROUP for count in seen.values()), seen
        self.generations.append(Generation(list(prompts), prompt_ids, ids, texts, groups, rng_state))
        return {"prompt_ids": prompt_ids, "completion_ids": ids, "logprobs": None}


# ---------------------------------------------------------------------------------------------------------
# TRL


@dataclass
class TrlRun:
    result: StepResult
    generations: list[Generation]
    permutations: list[list[int] | None]  # per step: TRL's mini-batch shuffle (None: one mini-batch)
    adapter: dict[str, torch.Tensor] | None  # the initial LoRA weights (both backends start from them)


def run_trl(data: dict[str, Any], folder: Path) -> TrlRun:
    """TRL's GRPOTrainer as retrain builds it, trained for the config's steps on the scripted completions.
    With LoRA, the adapter starts from `lora_adapter` (verl's run loads the same)."""
    with one_thread():
        return _run_trl(data, folder)


def _run_trl(data: dict[str, Any], folder: Path) -> TrlRun:
    from tests.parity.build import trl_trainer

    trainer, _ = trl_trainer(data, folder)
    rollout = ScriptedRollout(trainer.processing_class)
    trainer.rollout_func = rollout  # TRL's generation extension point (GRPOTrainer._generate)
    adapter = None
    if data["model"].get("lora") is not None:
        adapter = lora_adapter({n: p.shape for n, p in trainer.model.named_parameters() if p.requires_grad})
        load_adapter(trainer.model, adapter)
    norms: list[float] = []
    clip = trainer._clip_grad_norm

    def observed_clip(model):  # type: ignore[no-untyped-def]
        norm = clip(model)
        norms.append(float(norm))
        return norm

    trainer._clip_grad_norm = observed_clip
    before = trained_parameters(trainer.model)
    trainer.train()
    after = trained_parameters(trainer.model)
    logs = [entry for entry in trainer.state.log_history if "loss" in entry and "train_loss" not in entry]
    steps = trainer.args.max_steps // (trainer.args.steps_per_generation // trainer.args.gradient_accumulation_steps
                                       * trainer.args.num_iterations)
    assert len(logs) == steps == len(rollout.generations), (logs, steps, len(rollout.generations))
    permutations = []
    for generation in rollout.generations:
        if trainer.args.steps_per_generation == trainer.args.gradient_accumulation_steps:
            permutations.append(None)  # one mini-batch: the order does not matter
            continue
        # TRL's _prepare_inputs shuffles the scored batch with torch.randperm on torch's global RNG, right
        # after generating (shuffle_sequence_dict); nothing draws from that RNG in between.
        generator = torch.Generator()
        generator.set_state(generation.rng_state)
        permutations.append(torch.randperm(len(generation.texts), generator=generator).tolist())
    if permutations[-1] is not None:  # what TRL buffered for the last step is in that order
        buffered = [row for batch in trainer._buffered_inputs
                    for row in batch["completion_ids"].tolist()]
        last = rollout.generations[-1]
        expected = [last.completion_ids[i] for i in permutations[-1]]
        assert [row[: len(ids)] for row, ids in zip(buffered, expected, strict=True)] == expected
    result = StepResult(before, after, norms, [entry["loss"] for entry in logs],
                        {"logs": logs, "kl": [entry.get("kl") for entry in logs],
                         "lr": [entry["learning_rate"] for entry in logs],
                         "exp_avg": optimizer_moments(trainer.model, trainer.optimizer)})
    return TrlRun(result, rollout.generations, permutations, adapter)


# ---------------------------------------------------------------------------------------------------------
# verl

VERL_ENVIRONMENT = {
    # What retrain's launch gives verl's workers on a CPU (launch._environment) ...
    "VERL_PLATFORM": "cpu",
    "VERL_USE_EXTERNAL_MODULES": "retrain.backends.verl.cpu",
    "VERL_ENGINE_DEVICE": "cuda",
    "VERL_LOGGING_LEVEL": "WARN",
    # ... and what a Ray worker gets from verl's RayWorkerGroup (world size 1).
    "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
}


CPU_ONLY = ("VERL_PLATFORM", "VERL_USE_EXTERNAL_MODULES", "VERL_ENGINE_DEVICE")


@contextlib.contextmanager
def verl_process(cuda: bool = False) -> Iterator[None]:
    """The environment of a verl worker process, for the duration of one run; the process group verl's
    worker initialises is destroyed at the end (the next run starts a new one). `cuda`: verl's own CUDA
    platform (NCCL), as on a GPU machine, instead of retrain's CPU platform."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    values = {**VERL_ENVIRONMENT, "MASTER_PORT": port}
    if cuda:
        values = {key: value for key, value in values.items() if key not in CPU_ONLY}
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        if not cuda:
            from verl.plugin.platform.platform_manager import PlatformRegistry, get_platform, set_platform

            import retrain.backends.verl.cpu  # noqa: F401  (the CPU platform; verl imports it when started so)

            if get_platform().device_name != "cpu":  # verl was imported and used before, without the CPU platform
                set_platform(PlatformRegistry.get("cpu")())
        yield
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def verl_config(data: dict[str, Any], extra_overrides: list[str] | None = None) -> Any:
    """verl's composed config for the case, as retrain composes it, with the resolved model; then what
    verl's trainer does before building workers (main_ppo: OmegaConf.resolve; trainer_base
    _init_dataloader: optim.total_training_steps = total_training_steps x parameter_sync_step)."""
    from omegaconf import OmegaConf, open_dict

    from retrain.models import resolve_model
    from tests.parity.build import verl_composed

    composed = verl_composed(data, [f"actor_rollout_ref.model.path={resolve_model('retrain:tiny')}",
                                    *(extra_overrides or [])])
    OmegaConf.resolve(composed)
    v1 = composed.trainer.v1
    sync_steps = v1.get(v1.trainer_mode, {}).get("parameter_sync_step", 1)
    with open_dict(composed):
        composed.actor_rollout_ref.actor.optim.total_training_steps = composed.trainer.total_training_steps * sync_steps
    return composed


def verl_advantages(composed: Any, scores: list[float], group_ids: list[int], lengths: list[int]) -> torch.Tensor:
    """verl's GRPO advantages, as the v1 trainer computes them (`compute_advantage_for_multi_trajectories`):
    one score per completion on its last token, grouped by uid. One advantage per completion."""
    import numpy as np
    from verl.protocol import DataProto
    from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories

    width = max(lengths)
    mask = (torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).float()
    token_scores = torch.zeros(len(scores), width)
    token_scores[torch.arange(len(scores)), torch.tensor(lengths) - 1] = torch.tensor(scores)
    uids = [f"prompt{g}" for g in group_ids]
    data = DataProto.from_dict(tensors={"token_level_rewards": token_scores, "response_mask": mask},
                               non_tensors={"uid": np.array(uids, dtype=object)})
    keys = [f"{uid}_{i}_0" for i, uid in enumerate(uids)]  # {uid}_{session}_{index}: one session per row
    algorithm = composed.algorithm
    data = compute_advantage_for_multi_trajectories(
        data, batch_keys=keys, adv_estimator=algorithm.adv_estimator, gamma=algorithm.gamma, lam=algorithm.lam,
        num_repeat=composed.actor_rollout_ref.rollout.n,
        norm_adv_by_std_in_grpo=algorithm.get("norm_adv_by_std_in_grpo", True), config=algorithm,
    )
    return data.batch["advantages"][:, 0]


def pack_batch(prompt_ids, responses, fields: dict[str, list[torch.Tensor]], extra_info: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The TensorDict verl's worker gets from TransferQueue: one row per sample as the agent loop and the
    trainer put them (agent_loop_tq.py, trainer_base.py), packed by TQ's own `_pack_field_values`, with the
    trainer's extra_info as non-tensor data."""
    from tensordict import TensorDict
    from transfer_queue.storage.managers.simple_storage_manager import AsyncSimpleStorageManager
    from verl.utils import tensordict_utils as tu
    from verl.utils.model import compute_position_id_with_mask

    rows = []
    for i, (prompt, response) in enumerate(zip(prompt_ids, responses, strict=True)):
        prompts = torch.tensor(prompt, dtype=torch.int64)
        response_t = torch.tensor(response, dtype=torch.int64)
        input_ids = torch.cat([prompts, response_t])
        mask = torch.ones_like(response_t)
        row = {"prompts": prompts, "responses": response_t, "response_mask": mask, "loss_mask": mask,
               "input_ids": input_ids,
               "position_ids": compute_position_id_with_mask(torch.ones_like(input_ids).unsqueeze(0)).squeeze(0)}
        row.update({key: values[i] for key, values in fields.items()})
        rows.append(row)
    td = TensorDict({k: AsyncSimpleStorageManager._pack_field_values([r[k] for r in rows]) for k in rows[0]},
                    batch_size=[len(rows)])
    for key, value in extra_info.items():
        tu.assign_non_tensor_data(tensor_dict=td, key=key, val=value)
    return td


def _per_row(output, td) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    """compute_log_prob's log-probs, one tensor per response (as the trainer writes them back)."""
    from verl.workers.utils.padding import response_from_nested

    return [row.to(torch.float32) for row in response_from_nested(output["log_probs"], td["response_mask"]).unbind()]


def run_verl(data: dict[str, Any], trl: TrlRun, extra_overrides: list[str] | None = None) -> StepResult:
    """verl's actor worker on the same batches (in TRL's mini-batch order), one `update_actor` per step."""
    from retrain.core.rollout import Message, Rollout
    from retrain.core.scoring import Scorer
    from tests.parity.build import retrain_config

    scorer = Scorer.from_config(retrain_config(data, "verl"))
    with verl_process(cuda=data["resources"].get("gpus_per_node", 0) > 0), one_thread():
        from verl.utils.metric import reduce_metrics
        from verl.utils.py_functional import rename_dict
        from verl.workers.engine_workers import ActorRolloutRefWorker

        composed = verl_config(data, extra_overrides)
        arr = composed.actor_rollout_ref
        actor = arr.actor
        worker = ActorRolloutRefWorker(config=arr, role="actor")
        worker.init_model()
        module = worker.actor.engine.module
        if trl.adapter is not None:
            load_adapter(module, trl.adapter)
        before = trained_parameters(module)
        temperature = arr.rollout.temperature
        grad_norms, losses, pg_losses, kl_losses, lrs, raw = [], [], [], [], [], []
        for generation, permutation in zip(trl.generations, trl.permutations, strict=True):
            order = permutation or list(range(len(generation.texts)))
            prompt_ids = [generation.prompt_ids[i] for i in order]
            responses = [generation.completion_ids[i] for i in order]
            # Rewards: retrain's Scorer on the completions (as retrain's verl reward manager calls it)
            rollouts = [Rollout(prompt_messages=[Message(m["role"], m["content"]) for m in generation.prompts[i]],
                                completion_messages=[Message("assistant", generation.texts[i])],
                                completion_token_ids=generation.completion_ids[i]) for i in order]
            scores = [b.total for b in scorer.score_sync(rollouts)]
            group_ids = [generation.group_ids[i] for i in order]
            # The batch's extra_info, which each stage of trainer_base._step_once updates in turn
            info: dict[str, Any] = {"temperature": temperature}
            # 1. old log-probs (trainer_base._compute_old_log_prob)
            info.update(calculate_entropy=True, compute_loss=False, temperature=temperature)
            td = pack_batch(prompt_ids, responses, {}, info)
            fields: dict[str, list[torch.Tensor]] = {"old_log_probs": _per_row(worker.compute_log_prob(td), td)}
            # 2. reference log-probs: with LoRA the actor without its adapter (trainer_base._compute_ref_log_prob)
            if actor.use_kl_loss:
                assert arr.model.lora_rank > 0, "KL on a CPU needs LoRA (the reference is the base model)"
                info.update(calculate_entropy=False, compute_loss=False, temperature=temperature, no_lora_adapter=True)
                td = pack_batch(prompt_ids, responses, {}, info)
                fields["ref_log_prob"] = _per_row(worker.compute_log_prob(td), td)
            # 3. advantages (trainer_base._compute_advantage), on every response token
            advantages = verl_advantages(composed, scores, group_ids, [len(r) for r in responses])
            fields["advantages"] = [float(a) * torch.ones(len(r)) for a, r in zip(advantages, responses, strict=True)]
            # 4. the update (trainer_base._update_actor)
            mini_batch = actor.ppo_mini_batch_size * arr.rollout.n
            info.update(
                calculate_entropy=actor.calculate_entropy or actor.entropy_coeff != 0.0,
                distillation_use_topk=False, distillation_only=False,
                global_batch_size=mini_batch, mini_batch_size=mini_batch,
                epochs=actor.ppo_epochs, seed=actor.data_loader_seed,
                dataloader_kwargs={"shuffle": actor.shuffle}, temperature=temperature,
            )
            out = worker.update_actor(pack_batch(prompt_ids, responses, fields, info))
            metrics = dict(out["metrics"])
            raw.append(metrics)
            grad_norms += [float(v) for v in metrics["grad_norm"]]
            renamed = rename_dict(dict(metrics), "actor/")
            renamed.pop("actor/mfu", None)
            reduced = reduce_metrics(renamed)
            losses.append(float(reduced["actor/loss"]))
            pg_losses.append(float(reduced["actor/pg_loss"]))
            lrs.append(float(reduced["actor/lr"]))
            kl_losses.append(float(reduced["actor/kl_loss"]) if "actor/kl_loss" in reduced else None)
        after = trained_parameters(module)
        moments = optimizer_moments(module, worker.actor.engine.optimizer)
    return StepResult(before, after, grad_norms, losses, {"exp_avg": moments, "pg_loss": pg_losses, "lr": lrs,
                                                          "kl_loss": kl_losses, "raw": raw, "advantages": advantages})
