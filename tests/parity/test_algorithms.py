"""The algorithms both backends map (`algorithm.name`): the same inputs give the same loss and gradient, or the
advantages agree, through each library's own code: TRL's `GRPOTrainer._compute_loss` / `RLOOTrainer.compute_loss`
and advantage code on the trainer retrain builds, verl's `ppo_loss` and `compute_advantage` on the config retrain
composes. The inputs and the verl/TRL callers are those of test_loss.py and test_advantages.py.

Documented differences, each shown by a test below:
- RLOO: TRL clips the completion's whole ratio (exp of its summed log-ratios), verl each token's: the gradient
  is the same while the policy has not moved, not after; the loss values differ (TRL: -A, verl: -A x tokens).
- RLOO's batch whitening ('batch' scaling) is TRL's only; verl rejects it.
- GSPO: verl clamps a completion's mean log-ratio at 10, TRL does not.
- Algorithms one library lacks are validation errors naming the backend that has them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retrain.core.errors import ConfigError
from tests.parity import test_advantages as adv
from tests.parity import test_loss as loss
from tests.parity.build import retrain_config, trl_trainer, verl_composed

TOLERANCE = loss.TOLERANCE


def loss_config(algorithm: dict, folder) -> dict:
    data = loss.config_data("dapo", 0.0, folder)
    base = {key: value for key, value in data["algorithm"].items()
            if key in ("group_size", "prompts_per_step", "max_completion_tokens")}
    data["algorithm"] = {**base, **algorithm}
    return data


# Each policy loss both libraries have, with clip settings that make its clipping (or cap) act on the inputs.
POLICY_LOSSES = {
    "gspo": {"name": "gspo", "clip_range": loss.CLIP, "clip_range_high": loss.CLIP_HIGH},
    "cispo": {"name": "cispo", "clip_range_high": loss.CLIP_HIGH},
    "sapo": {"name": "sapo"},
    "dr_grpo": {"name": "dr_grpo", "clip_range": loss.CLIP, "clip_range_high": loss.CLIP_HIGH},
    "dapo": {"name": "dapo", "dynamic_sampling": False},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(TRL trainer, verl ActorConfig, verl mini-batch) per algorithm, built once per module."""
    from verl.utils.config import omega_conf_to_dataclass

    cache: dict[str, tuple] = {}

    def get(name: str, algorithm: dict) -> tuple:
        if name not in cache:
            folder = tmp_path_factory.mktemp(name)
            data = loss_config(algorithm, folder)
            trainer, _ = trl_trainer(data, folder)
            trainer.model.train()
            trainer.current_gradient_accumulation_steps = 1
            composed = verl_composed(data)
            mini_batch = composed.actor_rollout_ref.actor.ppo_mini_batch_size * composed.actor_rollout_ref.rollout.n
            cache[name] = (trainer, omega_conf_to_dataclass(composed.actor_rollout_ref.actor), mini_batch)
        return cache[name]

    return get


@pytest.mark.parametrize("moved", [False, True], ids=["ratio 1", "moved"])
@pytest.mark.parametrize("name", sorted(POLICY_LOSSES))
def test_each_policy_loss_gives_the_same_loss_and_gradient_on_both(built, name, moved):
    trainer, actor, mini_batch = built(name, POLICY_LOSSES[name])
    logps = loss.MOVED_LOGPS if moved else loss.OLD_LOGPS
    trl_value, trl_grad = loss.trl_loss(trainer, logps, loss.OLD_LOGPS)
    verl_value, verl_grad = loss.verl_loss(actor, mini_batch, logps, loss.OLD_LOGPS)
    assert trl_value == pytest.approx(verl_value, abs=TOLERANCE)
    assert torch.allclose(trl_grad, verl_grad, atol=TOLERANCE, rtol=0)
    assert trl_grad.abs().sum() > 0


def test_the_policy_losses_are_really_different_losses(built):
    """A mapping that fell back to the plain clipped loss would still pass the test above if it did so on both
    sides: each loss must differ from the clipped loss on the moved inputs."""
    trainer, actor, mini_batch = built("dapo", POLICY_LOSSES["dapo"])
    clipped = loss.verl_loss(actor, mini_batch, loss.MOVED_LOGPS, loss.OLD_LOGPS)[1]
    for name in ("gspo", "cispo", "sapo"):
        _, other_actor, other_mini_batch = built(name, POLICY_LOSSES[name])
        gradient = loss.verl_loss(other_actor, other_mini_batch, loss.MOVED_LOGPS, loss.OLD_LOGPS)[1]
        assert not torch.allclose(gradient, clipped, atol=1e-3), name


def test_cispo_caps_the_ratio_from_above_only_on_both(built):
    """TRL's cispo has no lower bound; retrain sets verl's lower clip to 1.0 (a clamp at 0 that never binds)."""
    trainer, actor, _ = built("cispo", POLICY_LOSSES["cispo"])
    assert trainer.epsilon_high == pytest.approx(1 + loss.CLIP_HIGH)
    assert actor.clip_ratio_low == 1.0 and actor.clip_ratio_high == pytest.approx(loss.CLIP_HIGH)
    ratios = torch.tensor(loss.RATIOS)[loss.MASK.bool()]
    assert (ratios < 1 - loss.CLIP).any()  # ratios a symmetric clip would have bounded from below


# -- RLOO ------------------------------------------------------------------------------------------------

def rloo_data(folder, scaling: str = "none") -> dict:
    data = adv.config_data(scaling, folder)
    data["algorithm"] = {**data["algorithm"], "name": "rloo"}
    return data


def leave_one_out() -> list[float]:
    rewards = torch.tensor(adv.REWARDS, dtype=torch.float64)
    others = (rewards.sum(dim=1, keepdim=True) - rewards) / (adv.GROUP - 1)
    return (rewards - others).reshape(-1).tolist()


def test_rloo_gives_the_same_leave_one_out_advantages_on_both(tmp_path):
    data = rloo_data(tmp_path)
    trainer, _ = trl_trainer(data, tmp_path)
    assert type(trainer).__mro__[1].__name__ == "RLOOTrainer"  # TRL's own RLOO trainer
    trl = adv.trl_advantages(data, tmp_path)
    verl = adv.verl_advantages(data)
    assert verl_composed(data).algorithm.adv_estimator == "rloo"
    assert trl.tolist() == pytest.approx(verl.tolist(), abs=adv.TOLERANCE * 10)
    assert trl.tolist() == pytest.approx(leave_one_out(), abs=adv.TOLERANCE * 10)


def test_rloo_batch_whitening_is_trl_only(tmp_path):
    data = rloo_data(tmp_path, "batch")
    assert retrain_config(data, "trl").algorithm.reward_scaling == "batch"
    with pytest.raises(ConfigError) as info:
        retrain_config(data, "verl")
    assert "algorithm.reward_scaling" in {issue.field for issue in info.value.issues}


@pytest.fixture(scope="module")
def rloo(tmp_path_factory):
    from verl.utils.config import omega_conf_to_dataclass

    folder = tmp_path_factory.mktemp("rloo-loss")
    data = loss_config({"name": "rloo", "clip_range": loss.CLIP, "clip_range_high": loss.CLIP_HIGH}, folder)
    trainer, _ = trl_trainer(data, folder)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    composed = verl_composed(data)
    mini_batch = composed.actor_rollout_ref.actor.ppo_mini_batch_size * composed.actor_rollout_ref.rollout.n
    return trainer, omega_conf_to_dataclass(composed.actor_rollout_ref.actor), mini_batch


def trl_rloo_loss(trainer, logps: torch.Tensor, old_logps: torch.Tensor) -> tuple[float, torch.Tensor]:
    """RLOOTrainer.compute_loss itself: it sums the per-token log-probs of each completion (its old ones come
    summed from generation)."""
    per_token_logps = logps.clone().requires_grad_(True)
    trainer._get_per_token_logps_and_entropies = lambda *args, **kwargs: (per_token_logps, loss.ENTROPIES, None)
    inputs = {
        "prompt_ids": torch.ones(loss.BATCH, 3, dtype=torch.long),
        "prompt_mask": torch.ones(loss.BATCH, 3, dtype=torch.long),
        "completion_ids": torch.ones(loss.BATCH, loss.WIDTH, dtype=torch.long),
        "completion_mask": loss.MASK,
        "advantages": torch.tensor(loss.ADVANTAGES),
        "old_logps": (old_logps * loss.MASK).sum(1),
    }
    value = trainer.compute_loss(trainer.model, inputs)
    value.backward()
    return value.item(), per_token_logps.grad


def test_rloo_on_policy_both_give_the_same_gradient(rloo):
    trainer, actor, mini_batch = rloo
    assert actor.loss_agg_mode == "seq-mean-token-sum"
    _, trl_grad = trl_rloo_loss(trainer, loss.OLD_LOGPS, loss.OLD_LOGPS)
    _, verl_grad = loss.verl_loss(actor, mini_batch, loss.OLD_LOGPS, loss.OLD_LOGPS)
    assert torch.allclose(trl_grad, verl_grad, atol=TOLERANCE, rtol=0)
    # -A / completions on each of a completion's tokens
    expected = -torch.tensor(loss.ADVANTAGES).unsqueeze(1) * loss.MASK / loss.BATCH
    assert torch.allclose(trl_grad, expected, atol=TOLERANCE, rtol=0)


def test_rloo_loss_values_differ_by_the_completion_lengths(rloo):
    """DOCUMENTED DIFFERENCE: TRL's loss is -A x (whole ratio) per completion, verl's -A x ratio summed over
    tokens; on-policy: mean(-A) against mean(-A x length)."""
    trainer, actor, mini_batch = rloo
    trl_value, _ = trl_rloo_loss(trainer, loss.OLD_LOGPS, loss.OLD_LOGPS)
    verl_value, _ = loss.verl_loss(actor, mini_batch, loss.OLD_LOGPS, loss.OLD_LOGPS)
    advantages, lengths = torch.tensor(loss.ADVANTAGES), torch.tensor(loss.LENGTHS, dtype=torch.float32)
    assert trl_value == pytest.approx(-advantages.mean().item(), abs=TOLERANCE)
    assert verl_value == pytest.approx(-(advantages * lengths).mean().item(), abs=TOLERANCE)


def test_rloo_off_policy_the_gradients_differ_where_the_whole_ratio_clips(rloo):
    """DOCUMENTED DIFFERENCE: once the policy moved, TRL's whole-sequence ratio clips a completion as a whole
    (its gradient vanishes) where verl still clips token by token."""
    trainer, actor, mini_batch = rloo
    _, trl_grad = trl_rloo_loss(trainer, loss.MOVED_LOGPS, loss.OLD_LOGPS)
    _, verl_grad = loss.verl_loss(actor, mini_batch, loss.MOVED_LOGPS, loss.OLD_LOGPS)
    assert not torch.allclose(trl_grad, verl_grad, atol=1e-3)
    whole = ((loss.MOVED_LOGPS - loss.OLD_LOGPS) * loss.MASK).sum(1).exp()
    advantages = torch.tensor(loss.ADVANTAGES)
    clipped = ((whole > 1 + loss.CLIP_HIGH) & (advantages > 0)) | ((whole < 1 - loss.CLIP) & (advantages < 0))
    assert clipped.any()
    assert trl_grad[clipped].abs().sum() == 0  # TRL: a clipped completion contributes nothing
    assert verl_grad[clipped].abs().sum() > 0  # verl: its unclipped tokens still do


# -- what one library lacks ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["reinforce_pp", "reinforce_pp_baseline", "ppo", "dapo"])
def test_an_algorithm_trl_lacks_is_a_validation_error_naming_verl(tmp_path, name):
    data = adv.config_data("group", tmp_path)
    data["algorithm"] = {key: value for key, value in data["algorithm"].items() if key != "reward_scaling"}
    data["algorithm"]["name"] = name
    with pytest.raises(ConfigError) as info:
        retrain_config(data, "trl")
    messages = {issue.field: issue.message for issue in info.value.issues}
    assert "algorithm.name" in messages, messages
    assert "backend: verl" in messages["algorithm.name"]
    assert retrain_config(data, "verl").algorithm.name == name


def test_reinforce_pp_advantages_are_verls_own_batch_whitened_returns(tmp_path):
    """verl only: its `compute_advantage` with the estimator retrain composes whitens the outcome over the batch."""
    data = adv.config_data("batch", tmp_path)
    data["algorithm"]["name"] = "reinforce_pp"
    assert verl_composed(data).algorithm.adv_estimator == "reinforce_plus_plus"
    advantages = adv.verl_advantages(data)
    rewards = np.array(adv.REWARDS, dtype=np.float64).reshape(-1)
    assert abs(advantages.double().mean().item()) < 0.5  # whitened over tokens, not completions: near 0
    assert np.corrcoef(advantages.double().numpy(), rewards)[0, 1] > 0.99


def test_gspo_verl_clamps_a_sequence_log_ratio_above_10_and_trl_does_not(built):
    """DOCUMENTED DIFFERENCE: verl's gspo clamps the sequence's log-ratio at 10 (core_algos: "for numerical
    stability"); TRL does not. It shows only for a negative advantage (whose ratio is not clipped above) once a
    completion's mean log-ratio passes 10: a policy e^10 times likelier than the one that sampled it."""
    trainer, actor, mini_batch = built("gspo", POLICY_LOSSES["gspo"])
    row = 1  # advantage -0.8
    logps = loss.OLD_LOGPS.clone()
    logps[row] = loss.OLD_LOGPS[row] + 11.0 * loss.MASK[row]  # mean log-ratio 11 over its tokens
    trl_value, _ = loss.trl_loss(trainer, logps, loss.OLD_LOGPS)
    verl_value, _ = loss.verl_loss(actor, mini_batch, logps, loss.OLD_LOGPS)
    # per-sequence mean then batch mean: the row's loss -A x ratio differs by -A x (e^11 - e^10) / completions
    predicted = -loss.ADVANTAGES[row] * (np.exp(11.0) - np.exp(10.0)) / loss.BATCH
    assert trl_value - verl_value == pytest.approx(predicted, rel=1e-4)
    logps[row] = loss.OLD_LOGPS[row] + 9.0 * loss.MASK[row]  # below the clamp: equal again
    assert loss.trl_loss(trainer, logps, loss.OLD_LOGPS)[0] == pytest.approx(
        loss.verl_loss(actor, mini_batch, logps, loss.OLD_LOGPS)[0], rel=1e-5)
