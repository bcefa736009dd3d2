"""Every native key a translation sets from the config is in its backend's ownership table: the table that
guards backend_options and that docs/mappings.md is generated from (so the docs list every mapping)."""

from __future__ import annotations

import pytest

from retrain.config_models import TrainingConfig

# Varied configs, so that every conditional mapping is exercised.
CONFIGS = [
    {},
    {"algorithm": {"loss_aggregation": "dr_grpo", "kl_coef": 0.05, "mini_batches": 2, "updates_per_batch": 2},
     "model": {"name": "retrain:tiny", "lora": {"r": 4}}},
    {"optimizer": {"lr_scheduler": "cosine", "min_lr_ratio": 0.1, "warmup_ratio": 0.1},
     "data": {"prompts": ["a", "b"], "max_prompt_tokens": 64, "chat_template_kwargs": {"enable_thinking": False}},
     "training": {"micro_batch_size": 2}},
    {"rollout": {"importance_sampling_correction": True}, "resources": {"gpus_per_node": 1}},
]
# GRPOConfig fields retrain sets for its own plumbing, not from a config field (a user may set them).
TRL_PLUMBING = {"disable_tqdm", "log_completions", "use_bias_correction_kl", "ddp_find_unused_parameters",
                "model_init_kwargs"}


def config(backend: str, sections: dict) -> TrainingConfig:
    data = {"backend": backend, "model": {"name": "retrain:tiny"}, "example_prompts": ["a", "b"], **sections}
    if "data" in sections:
        data.pop("example_prompts")
    return TrainingConfig.from_data(data)


@pytest.mark.parametrize("sections", CONFIGS)
def test_every_grpo_config_field_retrain_sets_is_owned(sections):
    from retrain.backends.trl.translate import _OWNED, grpo_config_kwargs

    for cuda in (False, True):
        kwargs, _ = grpo_config_kwargs(config("trl", sections), "out", cuda=cuda, bf16_supported=cuda)
        assert set(kwargs) - TRL_PLUMBING - set(_OWNED) == set()


@pytest.mark.parametrize("sections", CONFIGS)
def test_every_verl_override_retrain_derives_from_the_config_is_owned(sections):
    from retrain.backends.verl.translate import OWNED, algorithm_overrides

    keys = {override.split("=", 1)[0].lstrip("+") for override in algorithm_overrides(config("verl", sections))}
    keys -= {"trainer.test_freq", "trainer.val_before_train"}  # validation is retrain's (always off in verl)
    assert keys - set(OWNED) == set()
