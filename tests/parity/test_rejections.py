"""Options one backend cannot honour are rejected at validation for that backend, naming the field,
and accepted by the other: nothing is silently dropped, and nothing is refused that the other can run."""

from __future__ import annotations

import pytest

from retrain.core.errors import ConfigError
from tests.parity.build import retrain_config
from tests.tiny_runs import stand_in_package

BASE = {"model": {"name": "retrain:tiny"}, "example_prompts": ["Write a poem."]}

# (what, config sections, the backend that rejects it, the field its error names)
ONE_SIDED = [
    ("batch reward scaling", {"algorithm": {"reward_scaling": "batch"}}, "verl", "algorithm.reward_scaling"),
    ("LoRA dropout", {"model": {"name": "retrain:tiny", "lora": {"r": 4, "dropout": 0.05}}}, "verl",
     "model.lora.dropout"),
    ("metrics every 2 steps", {"training": {"log_every": 2}}, "verl", "training.log_every"),
    ("KL without LoRA on a CPU", {"algorithm": {"kl_coef": 0.05}}, "verl", "algorithm.kl_coef"),
    ("bfloat16 on a CPU", {"model": {"name": "retrain:tiny", "dtype": "bfloat16"}}, "verl", "model.dtype"),
    ("a Ray cluster", {"resources": {"ray_address": "10.0.0.1:6379"}}, "trl", "resources.ray_address"),
    ("several nodes", {"resources": {"nodes": 2, "gpus_per_node": 1, "ray_address": "10.0.0.1:6379"}}, "trl",
     "resources.nodes"),
    ("a linear learning-rate decay", {"optimizer": {"lr_scheduler": "linear"}}, "verl", "optimizer.lr_scheduler"),
]
OTHER = {"trl": "verl", "verl": "trl"}


@pytest.mark.parametrize(("what", "sections", "rejecting", "field"), ONE_SIDED, ids=[case[0] for case in ONE_SIDED])
def test_the_backend_that_cannot_honour_an_option_rejects_it_naming_the_field(what, sections, rejecting, field):
    with pytest.raises(ConfigError) as info:
        retrain_config({**BASE, **sections}, rejecting)
    named = [issue for issue in info.value.issues if issue.field == field]
    assert named and named[0].message, f"{rejecting} should reject {what} naming {field}: {info.value}"


@pytest.mark.parametrize(("what", "sections", "rejecting", "field"), ONE_SIDED, ids=[case[0] for case in ONE_SIDED])
def test_the_other_backend_accepts_it(what, sections, rejecting, field):
    retrain_config({**BASE, **sections}, OTHER[rejecting])


def test_verl_accepts_kl_on_a_cpu_with_lora_and_on_gpus():
    """The CPU KL rejection is about verl's separate reference model, not the KL term itself."""
    retrain_config({**BASE, "algorithm": {"kl_coef": 0.05}, "model": {"name": "retrain:tiny", "lora": {"r": 4}}},
                   "verl")
    retrain_config({**BASE, "algorithm": {"kl_coef": 0.05}, "resources": {"gpus_per_node": 1}}, "verl")


@pytest.mark.parametrize("aggregation", ["grpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("scaling", ["group", "none"])
def test_both_backends_accept_every_loss_aggregation_and_the_shared_reward_scalings(aggregation, scaling):
    sections = {"algorithm": {"loss_aggregation": aggregation, "reward_scaling": scaling}}
    for backend in ("trl", "verl"):
        retrain_config({**BASE, **sections}, backend)


@pytest.mark.parametrize(("sections", "rejecting", "field"), [
    ({"environment": {"tools": ["calculator"]}, "rollout": {"engine": "vllm"}}, "trl", "rollout.engine"),
    ({"rollout": {"vllm_mode": "server"}}, "verl", "rollout.vllm_mode"),
], ids=["vLLM with an environment", "a vLLM server"])
def test_vllm_options_one_backend_cannot_honour(sections, rejecting, field, tmp_path, monkeypatch):
    """With vLLM "installed": an empty stand-in package that only importlib.util.find_spec sees (vLLM needs
    CUDA and is not installed on the machines this suite runs on)."""
    stand_in_package("vllm", tmp_path, monkeypatch)
    data = {**BASE, **sections, "resources": {"gpus_per_node": 1}}
    with pytest.raises(ConfigError) as info:
        retrain_config(data, rejecting)
    assert any(issue.field == field for issue in info.value.issues), info.value
    retrain_config(data, OTHER[rejecting])
