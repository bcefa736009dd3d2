"""Advantages: the same group rewards give the same advantages under every reward scaling both map.

TRL side: TRL's own advantage code, inside `GRPOTrainer._generate_and_score_completions`, on the
trainer retrain builds. verl side: verl's own `compute_advantage` (what the v1 trainer calls through
`compute_advantage_for_multi_trajectories`), with the estimator and `norm_adv_by_std_in_grpo` taken
from the config retrain composes.

Documented difference: with 'group' scaling both divide (reward - group mean) by the group's
Bessel-corrected std plus an epsilon, TRL's 1e-4 and verl's 1e-6. For a group whose std is small the
advantages differ visibly (std 0.0058: TRL's are 1.7% smaller); with 'none' they are equal.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retrain.core.errors import ConfigError
from tests.parity.build import retrain_config, trl_trainer, verl_composed

GROUP = 4
REWARDS = [
    [1.0, 0.0, 0.5, 0.25],
    [0.7, 0.7, 0.7, 0.7],  # all equal: no signal
    [0.50, 0.51, 0.50, 0.51],  # small std: the epsilons matter
    [-3.0, 0.0, 10.0, 25.0],  # large spread
]
PROMPTS = len(REWARDS)
BATCH = PROMPTS * GROUP
TRL_EPSILON, VERL_EPSILON = 1e-4, 1e-6  # trl/trainer/grpo_trainer.py, verl/trainer/ppo/core_algos.py
TOLERANCE = 1e-6


def config_data(scaling: str, folder) -> dict:
    return {
        "model": {"name": "retrain:tiny"},
        "example_prompts": [f"Prompt number {i}." for i in range(PROMPTS)],
        "algorithm": {"group_size": GROUP, "prompts_per_step": PROMPTS, "max_completion_tokens": 4,
                      "reward_scaling": scaling},
        "training": {"output_dir": str(folder)},
    }


def trl_advantages(data: dict, folder) -> torch.Tensor:
    trainer, _ = trl_trainer(data, folder)
    rewards = torch.tensor(REWARDS, dtype=torch.float32).reshape(BATCH, 1)  # (B, one reward function)
    # The injection point for "same inputs": the rewards TRL computes are replaced by the given ones.
    # Everything else (generation, grouping, mean, std, scaling) is TRL's own code.
    trainer._calculate_rewards = lambda inputs, prompts, completions, completion_ids_list: rewards
    trainer.model.train()  # as Trainer.train does: TRL's training path (num_generations, not _eval)
    inputs = [dict(trainer.train_dataset[i // GROUP]) for i in range(BATCH)]  # each prompt group-size times
    return trainer._generate_and_score_completions(inputs)["advantages"]


def verl_advantages(data: dict) -> torch.Tensor:
    from verl.protocol import DataProto
    from verl.trainer.ppo.ray_trainer import compute_advantage

    algorithm = verl_composed(data).algorithm
    width = 5
    lengths = torch.tensor([5, 3, 1, 5] * PROMPTS)
    response_mask = (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)).float()
    token_level_rewards = torch.zeros(BATCH, width)  # an outcome reward sits on the last valid token
    token_level_rewards[torch.arange(BATCH), lengths - 1] = torch.tensor(REWARDS).reshape(-1)
    batch = DataProto.from_dict(
        tensors={"token_level_rewards": token_level_rewards, "response_mask": response_mask},
        non_tensors={"uid": np.array([f"prompt-{i // GROUP}" for i in range(BATCH)], dtype=object)},
    )
    batch = compute_advantage(
        batch, adv_estimator=algorithm.adv_estimator, norm_adv_by_std_in_grpo=algorithm.norm_adv_by_std_in_grpo,
        config=algorithm,
    )
    advantages = batch.batch["advantages"]
    # One advantage per completion, on every valid token and nowhere else.
    per_completion = advantages[:, 0]
    assert torch.equal(advantages, per_completion.unsqueeze(1) * response_mask)
    return per_completion


@pytest.fixture(scope="module")
def advantages_under(tmp_path_factory):
    """Both backends' advantages for a reward scaling (each computed once per module)."""
    computed: dict[str, dict[str, torch.Tensor]] = {}

    def for_scaling(scaling: str) -> dict[str, torch.Tensor]:
        if scaling not in computed:
            folder = tmp_path_factory.mktemp(scaling)
            data = config_data(scaling, folder)
            computed[scaling] = {"trl": trl_advantages(data, folder), "verl": verl_advantages(data)}
        return computed[scaling]

    return for_scaling


def group_stats() -> tuple[torch.Tensor, torch.Tensor]:
    """Each completion's (reward - group mean) and group std (Bessel-corrected, as both use), in float64."""
    rewards = torch.tensor(REWARDS, dtype=torch.float64)
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True).expand_as(rewards)
    return centred.reshape(-1), std.reshape(-1)


@pytest.mark.parametrize("scaling", ["group", "none"])
def test_groups_with_equal_rewards_get_zero_advantage_on_both_backends(advantages_under, scaling):
    for side in advantages_under(scaling).values():
        assert side.view(PROMPTS, GROUP)[1].tolist() == [0.0] * GROUP


def test_without_scaling_both_backends_give_the_same_advantages(advantages_under):
    advantages = advantages_under("none")
    centred, _ = group_stats()
    assert advantages["trl"].tolist() == pytest.approx(advantages["verl"].tolist(), abs=TOLERANCE)
    assert advantages["trl"].tolist() == pytest.approx(centred.tolist(), abs=TOLERANCE)


def test_with_group_scaling_both_backends_centre_the_rewards_the_same(advantages_under):
    """Un-scaling each side by its own epsilon gives the same (reward - group mean). The values are
    float32, so the tolerance is relative (1e-6 of a value up to 17)."""
    advantages = advantages_under("group")
    centred, std = group_stats()
    trl_centred = advantages["trl"].double() * (std + TRL_EPSILON)
    verl_centred = advantages["verl"].double() * (std + VERL_EPSILON)
    assert trl_centred.tolist() == pytest.approx(verl_centred.tolist(), rel=TOLERANCE, abs=TOLERANCE)
    assert verl_centred.tolist() == pytest.approx(centred.tolist(), rel=TOLERANCE, abs=TOLERANCE)


def test_with_group_scaling_the_advantages_differ_by_exactly_what_the_epsilons_predict(advantages_under):
    """DOCUMENTED DIFFERENCE: TRL divides by (std + 1e-4), verl by (std + 1e-6)."""
    advantages = advantages_under("group")
    centred, std = group_stats()
    predicted = centred / (std + VERL_EPSILON) - centred / (std + TRL_EPSILON)
    measured = advantages["verl"].double() - advantages["trl"].double()
    assert measured.tolist() == pytest.approx(predicted.tolist(), abs=TOLERANCE)
    small_std_group = slice(2 * GROUP, 3 * GROUP)
    relative = (measured / advantages["verl"].double())[small_std_group]
    assert relative.abs().min().item() == pytest.approx(0.0169, abs=1e-4)  # 1.7% for a std of 0.0058


def test_verl_rejects_batch_scaling_naming_the_field(tmp_path):
    """'batch' (TRL divides by the std of the whole batch) has no verl equivalent."""
    data = config_data("batch", tmp_path)
    with pytest.raises(ConfigError) as info:
        retrain_config(data, "verl")
    assert "algorithm.reward_scaling" in {issue.field for issue in info.value.issues}
    assert retrain_config(data, "trl").algorithm.reward_scaling == "batch"
