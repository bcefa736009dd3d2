"""Policy loss: the same log-probs, old log-probs, advantages (and reference log-probs) give the same loss.

TRL side: TRL's own `GRPOTrainer._compute_loss` on the trainer retrain builds. verl side: verl's own
loss function, `verl/workers/utils/losses.py::ppo_loss` (what the actor worker's engine calls on every
micro-batch), with the ActorConfig retrain composes, on one data-parallel rank whose mini-batch is the whole
batch (retrain makes one update per batch). Its inputs are laid out as the FSDP engine hands them over: the
model's log-probs (and entropies) flat over every prompt and response token, the batch's fields as jagged
nested tensors (no padding), and the global batch info the engine and the trainer add (dp_size,
batch_num_tokens = the mini-batch's valid tokens, global_batch_size = the mini-batch's completions).

Documented differences, each shown by its own test below:
- verl's dual clip (`clip_ratio_c`, 3.0) bounds the loss of a negative-advantage token whose ratio
  exceeds 3; TRL has no such bound (the parity inputs keep every ratio inside (1/3, 3)).
- verl clamps the low_var_kl (k3) estimate to at most 10; TRL does not (parity inputs keep it small).

TRL 1.16 would also multiply the KL term by the importance ratio (`use_bias_correction_kl`, on by
default); verl has no such option, so retrain's mapping turns it off on TRL and the KL terms match.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.parity.build import trl_trainer, verl_composed

PROMPTS, GROUP, MAX_TOKENS = 2, 3, 8
BATCH, WIDTH = PROMPTS * GROUP, 6
CLIP, CLIP_HIGH, KL_COEF = 0.2, 0.28, 0.05
TOLERANCE = 1e-5
AGGREGATIONS = ["grpo", "dr_grpo", "dapo"]

LENGTHS = [6, 4, 6, 2, 5, 3]  # completion tokens; the rest of each row is padding
ADVANTAGES = [1.1, -0.8, 0.6, -1.3, 0.4, -0.2]
PAD = 7.0  # a ratio on padding, which no loss may count
RATIOS = [  # pi / pi_old per token
    [1.35, 1.25, 0.70, 1.00, 2.50, 0.90],  # A > 0: 1.35, 2.5 clipped at 1.28; 1.25 unclipped only as clip_high is 0.28
    [0.70, 0.85, 1.30, 2.90, PAD, PAD],  # A < 0: 0.7 clipped at 0.8; 2.9 just inside verl's dual clip
    [1.10, 1.28, 1.50, 0.50, 1.05, 0.95],
    [0.40, 1.20, PAD, PAD, PAD, PAD],
    [1.00, 0.99, 1.27, 1.29, 0.80, PAD],
    [0.79, 0.81, 2.00, PAD, PAD, PAD],
]
KL_SHIFTS = [0.3, -0.5, 0.1, 0.6, -0.2, 0.0]  # reference minus current log-prob, moderate (k3 well below 10)

MASK = (torch.arange(WIDTH).unsqueeze(0) < torch.tensor(LENGTHS).unsqueeze(1)).long()
OLD_LOGPS = -(0.2 + (0.15 * torch.arange(BATCH * WIDTH, dtype=torch.float32).reshape(BATCH, WIDTH)) % 2.5)
MOVED_LOGPS = OLD_LOGPS + torch.tensor(RATIOS).log()
REF_SHIFT = torch.tensor([[KL_SHIFTS[(i + j) % len(KL_SHIFTS)] for j in range(WIDTH)] for i in range(BATCH)])
ENTROPIES = 0.5 + 0.05 * torch.arange(BATCH * WIDTH, dtype=torch.float32).reshape(BATCH, WIDTH)


def config_data(aggregation: str, kl_coef: float, folder) -> dict:
    return {
        "model": {"name": "retrain:tiny"},
        "example_prompts": ["First prompt.", "Second prompt."],
        "algorithm": {"group_size": GROUP, "prompts_per_step": PROMPTS, "max_completion_tokens": MAX_TOKENS,
                      "loss_aggregation": aggregation, "kl_coef": kl_coef, "clip_range": CLIP,
                      "clip_range_high": CLIP_HIGH},
        # verl on a CPU runs a KL term only with LoRA (retrain rejects it otherwise). The loss does not depend
        # on the hardware, so both backends get a one-GPU config; nothing here runs on a GPU.
        "resources": {"gpus_per_node": 1},
        "training": {"output_dir": str(folder)},
    }


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    """(TRL trainer, verl ActorConfig, verl mini-batch size) for a loss aggregation and KL coefficient."""
    from verl.utils.config import omega_conf_to_dataclass

    built: dict[tuple[str, float], tuple] = {}

    def get(aggregation: str, kl_coef: float = 0.0) -> tuple:
        if (aggregation, kl_coef) not in built:
            folder = tmp_path_factory.mktemp(f"{aggregation}-{kl_coef}")
            data = config_data(aggregation, kl_coef, folder)
            trainer, _ = trl_trainer(data, folder)
            trainer.model.train()  # as Trainer.train does
            trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop: one batch per optimizer step
            composed = verl_composed(data)
            # The v1 trainer's actor update: one mini-batch of ppo_mini_batch_size x rollout.n completions.
            mini_batch = composed.actor_rollout_ref.actor.ppo_mini_batch_size * composed.actor_rollout_ref.rollout.n
            built[(aggregation, kl_coef)] = (trainer, omega_conf_to_dataclass(composed.actor_rollout_ref.actor),
                                             mini_batch)
        return built[(aggregation, kl_coef)]

    return get


def trl_loss(trainer, logps: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor | None = None):
    """TRL's loss and its gradient with respect to the policy's per-token log-probs."""
    per_token_logps = logps.clone().requires_grad_(True)
    # The injection point for "same inputs": the model's per-token log-probs and entropies are the given
    # ones. Everything else (ratio, clipping, KL, masking, aggregation) is TRL's own code.
    trainer._get_per_token_logps_and_entropies = lambda *args, **kwargs: (per_token_logps, ENTROPIES, None)
    inputs = {
        "prompt_ids": torch.ones(BATCH, 3, dtype=torch.long),
        "prompt_mask": torch.ones(BATCH, 3, dtype=torch.long),
        "completion_ids": torch.ones(BATCH, WIDTH, dtype=torch.long),
        "completion_mask": MASK,
        "advantages": torch.tensor(ADVANTAGES),
        "old_per_token_logps": old_logps,
        "num_items_in_batch": MASK.sum(),  # as TRL's generation batch gives it
    }
    if ref_logps is not None:
        inputs["ref_per_token_logps"] = ref_logps
    loss = trainer._compute_loss(trainer.model, inputs)
    loss.backward()
    return loss.item(), per_token_logps.grad


PROMPT_TOKENS = 3  # each row's prompt, before its response (ppo_loss slices the response's log-probs out)


def nested(rows: list[torch.Tensor]) -> torch.Tensor:
    return torch.nested.as_nested_tensor(rows, layout=torch.jagged)


def verl_loss(actor, mini_batch: int, logps: torch.Tensor, old_logps: torch.Tensor,
              ref_logps: torch.Tensor | None = None):
    """verl's loss and gradient: `ppo_loss` itself, on the batch as verl's FSDP engine gives it to it."""
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.losses import ppo_loss

    log_prob = logps.clone().requires_grad_(True)
    lengths = LENGTHS

    def flat(values: torch.Tensor) -> torch.Tensor:
        """One value per prompt and response token, as the model's output: ppo_loss takes a response's
        values one token early (the log-prob of token t comes from the logits at t - 1)."""
        pieces = []
        for row, length in enumerate(lengths):
            pieces += [torch.zeros(PROMPT_TOKENS - 1), values[row, :length], torch.zeros(1)]
        return torch.cat(pieces)

    def rows(values: torch.Tensor) -> torch.Tensor:
        return nested([values[row, :length] for row, length in enumerate(lengths)])

    fields = {
        "prompts": nested([torch.ones(PROMPT_TOKENS, dtype=torch.long) for _ in lengths]),
        "responses": nested([torch.ones(length, dtype=torch.long) for length in lengths]),
        "response_mask": nested([torch.ones(length, dtype=torch.long) for length in lengths]),
        "old_log_probs": rows(old_logps),
        # verl's GRPO advantage: the completion's advantage on each of its tokens
        "advantages": rows(torch.tensor(ADVANTAGES).unsqueeze(1).expand(BATCH, WIDTH)),
    }
    if ref_logps is not None:
        fields["ref_log_prob"] = rows(ref_logps)
    data = TensorDict(fields, batch_size=[BATCH])
    # What the engine (batch_num_tokens: the mini-batch's valid tokens, dp_size) and the trainer
    # (global_batch_size: ppo_mini_batch_size x rollout.n completions) add for the loss's normalisation.
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=int(MASK.sum()), global_batch_size=mini_batch)
    model_output = {"log_probs": flat(log_prob)}
    if actor.calculate_entropy or actor.entropy_coeff != 0:  # the trainer asks for entropy only then
        model_output["entropy"] = flat(ENTROPIES)
    loss, _ = ppo_loss(actor, model_output, data)
    loss.backward()
    return loss.item(), log_prob.grad


def test_the_inputs_hit_both_clip_bounds_and_stay_inside_the_dual_clip():
    ratios = torch.tensor(RATIOS)[MASK.bool()]
    positive = (torch.tensor(ADVANTAGES).unsqueeze(1) > 0).expand(BATCH, WIDTH)[MASK.bool()]
    assert ((ratios > 1 + CLIP_HIGH) & positive).any()  # clipped above
    assert ((ratios > 1 + CLIP) & (ratios < 1 + CLIP_HIGH) & positive).any()  # clipped only by a symmetric range
    assert ((ratios < 1 - CLIP) & ~positive).any()  # clipped below
    assert ratios.min() > 1 / 3 and ratios.max() < 3  # verl's dual clip (3.0) never applies
    assert (MASK == 0).any()  # padding, holding ratios beyond the dual clip


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_the_same_inputs_give_the_same_policy_loss_and_gradient(backends, aggregation):
    trainer, actor, mini_batch = backends(aggregation)
    trl_value, trl_grad = trl_loss(trainer, MOVED_LOGPS, OLD_LOGPS)
    verl_value, verl_grad = verl_loss(actor, mini_batch, MOVED_LOGPS, OLD_LOGPS)
    assert trl_value == pytest.approx(verl_value, abs=TOLERANCE)
    assert torch.allclose(trl_grad, verl_grad, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("moved", [False, True], ids=["ratio 1", "moved"])
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_with_kl_the_same_inputs_give_the_same_loss_and_gradient(backends, aggregation, moved):
    """Also once the policy has moved (updates_per_batch > 1): retrain maps TRL's
    `use_bias_correction_kl` to off, as verl has no importance-weighted KL."""
    trainer, actor, mini_batch = backends(aggregation, KL_COEF)
    assert trainer.args.use_bias_correction_kl is False
    logps = MOVED_LOGPS if moved else OLD_LOGPS
    ref_logps = logps + REF_SHIFT
    trl_value, trl_grad = trl_loss(trainer, logps, OLD_LOGPS, ref_logps)
    verl_value, verl_grad = verl_loss(actor, mini_batch, logps, OLD_LOGPS, ref_logps)
    without_kl, _ = verl_loss(*backends(aggregation)[1:], logps, OLD_LOGPS)
    assert trl_value == pytest.approx(verl_value, abs=TOLERANCE)
    assert torch.allclose(trl_grad, verl_grad, atol=TOLERANCE, rtol=0)
    assert abs(verl_value - without_kl) > 10 * TOLERANCE  # the KL term is there


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_verl_bounds_a_negative_advantage_loss_beyond_the_dual_clip_and_trl_does_not(backends, aggregation):
    """DOCUMENTED DIFFERENCE: verl's dual clip (clip_ratio_c, which retrain leaves at verl's 3.0)."""
    from verl.trainer.ppo.core_algos import agg_loss

    trainer, actor, mini_batch = backends(aggregation)
    assert actor.clip_ratio_c == 3.0
    row, column, ratio = 1, 3, 4.0  # advantage -0.8, ratio 4 instead of 2.9
    logps = MOVED_LOGPS.clone()
    logps[row, column] = OLD_LOGPS[row, column] + math.log(ratio)
    trl_value, _ = trl_loss(trainer, logps, OLD_LOGPS)
    verl_value, _ = verl_loss(actor, mini_batch, logps, OLD_LOGPS)
    excess = torch.zeros(BATCH, WIDTH)  # TRL's token loss -A * ratio against verl's -A * clip_ratio_c
    excess[row, column] = -ADVANTAGES[row] * (ratio - actor.clip_ratio_c)
    predicted = agg_loss(loss_mat=excess, loss_mask=MASK.bool(), loss_agg_mode=actor.loss_agg_mode,
                         **actor.global_batch_info).item()
    assert trl_value - verl_value == pytest.approx(predicted, abs=TOLERANCE)
    assert predicted > 10 * TOLERANCE


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_verl_clamps_the_kl_estimate_at_10_and_trl_does_not(backends, aggregation):
    """DOCUMENTED DIFFERENCE: verl's low_var_kl is clamped to [-10, 10]; k3 = e^d - d - 1 passes 10 where
    d = ref - current log-prob is above about 2.6 or below about -11: a token the reference model finds
    far less likely. (The policy has not moved, so TRL's importance weight is 1.)"""
    from verl.trainer.ppo.core_algos import agg_loss

    trainer, actor, mini_batch = backends(aggregation, KL_COEF)
    ref_logps = OLD_LOGPS + REF_SHIFT
    row, column, shift = 0, 2, -12.0
    ref_logps[row, column] = OLD_LOGPS[row, column] + shift
    trl_value, _ = trl_loss(trainer, OLD_LOGPS, OLD_LOGPS, ref_logps)
    verl_value, _ = verl_loss(actor, mini_batch, OLD_LOGPS, OLD_LOGPS, ref_logps)
    excess = torch.zeros(BATCH, WIDTH)
    excess[row, column] = math.exp(shift) - shift - 1 - 10
    predicted = actor.kl_loss_coef * agg_loss(loss_mat=excess, loss_mask=MASK.bool(),
                                              loss_agg_mode=actor.loss_agg_mode, **actor.global_batch_info).item()
    assert trl_value - verl_value == pytest.approx(predicted, abs=TOLERANCE)
    assert predicted > 10 * TOLERANCE


def test_neither_backend_adds_an_entropy_bonus(backends):
    trainer, actor, _ = backends("dapo")
    assert actor.entropy_coeff == 0
    assert trainer.args.entropy_coef == 0
