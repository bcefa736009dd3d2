"""Config -> verl: composed from verl's own ppo_trainer.yaml and accepted by verl's validate_config."""

from __future__ import annotations

import pytest

from retrain.backends.verl.data import columns_from_extra_info, write_parquet
from retrain.backends.verl.translate import (
    algorithm_overrides,
    compose,
    translate_config,
)
from retrain.config_models import DataConfig, TrainingConfig
from retrain.core.errors import ConfigError
from retrain.data import load_rows

# What a machine adds (model path, rollout engine, micro-batches); the launch module owns these.
HARDWARE = [
    "actor_rollout_ref.model.path=/models/tiny",
    "actor_rollout_ref.rollout.name=vllm",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=4",
]


def config(**sections) -> TrainingConfig:
    return TrainingConfig.from_data({"model": {"name": "retrain:tiny"}, "example_prompts": ["p"], **sections})


@pytest.fixture(scope="module")
def composed():
    algorithm = {"group_size": 4, "prompts_per_step": 3, "max_steps": 7, "learning_rate": 3e-6, "kl_coef": 0.04,
                 "clip_range": 0.1, "clip_range_high": 0.28, "loss_aggregation": "dr_grpo",
                 "reward_scaling": "none", "temperature": 0.7, "top_p": 0.9, "max_completion_tokens": 33,
                 "updates_per_batch": 2}
    source = config(algorithm=algorithm, training={"seed": 5, "save_every": 3},
                    model={"name": "retrain:tiny", "lora": {"r": 4, "alpha": 8}})
    return compose(algorithm_overrides(source) + HARDWARE)


def test_algorithm_options_land_on_verls_keys(composed):
    actor, rollout = composed.actor_rollout_ref.actor, composed.actor_rollout_ref.rollout
    assert composed.algorithm.adv_estimator == "grpo"
    assert composed.algorithm.norm_adv_by_std_in_grpo is False
    assert (rollout.n, composed.data.train_batch_size, actor.ppo_mini_batch_size) == (4, 3, 3)
    assert (actor.optim.lr, actor.ppo_epochs) == (3e-6, 2)
    assert (actor.use_kl_loss, actor.kl_loss_coef, actor.kl_loss_type) == (True, 0.04, "low_var_kl")
    assert (actor.clip_ratio_low, actor.clip_ratio_high) == (0.1, 0.28)
    assert (actor.loss_agg_mode, actor.loss_scale_factor) == ("seq-mean-token-sum-norm", 33)
    assert (rollout.temperature, rollout.top_p, composed.data.max_response_length) == (0.7, 0.9, 33)
    assert (composed.trainer.total_training_steps, composed.trainer.save_freq, composed.data.seed) == (7, 3, 5)
    model = composed.actor_rollout_ref.model
    assert (model.lora_rank, model.lora_alpha) == (4, 8)


@pytest.mark.parametrize(("loss", "mode"), [("grpo", "seq-mean-token-mean"), ("dapo", "token-mean")])
def test_loss_aggregations_map_to_loss_agg_modes(loss, mode):
    overrides = algorithm_overrides(config(algorithm={"loss_aggregation": loss}))
    assert f"actor_rollout_ref.actor.loss_agg_mode={mode}" in overrides


def test_verls_validate_config_accepts_the_translation_and_backend_options_pass_through():
    source = config(backend_options={"verl": {"actor_rollout_ref.actor.entropy_coeff": 0.01}})
    native = translate_config(source, hardware_overrides=HARDWARE)
    assert native.settings["composed"]["actor_rollout_ref"]["actor"]["entropy_coeff"] == 0.01
    assert "actor_rollout_ref.actor.entropy_coeff=0.01" in native.render()


def test_options_verl_cannot_honour_are_named():
    from retrain.backends.verl import backend

    fields = {issue.field for issue in backend.check_config(config(
        algorithm={"reward_scaling": "batch"}, model={"name": "retrain:tiny", "lora": {"dropout": 0.1}},
        training={"log_every": 5}))}
    assert fields == {"algorithm.reward_scaling", "model.lora.dropout", "training.log_every"}


def test_rows_become_verls_parquet_with_every_column_kept(tmp_path):
    import pyarrow.parquet as pq

    source = tmp_path / "d.jsonl"
    source.write_text('{"prompt": "2+2?", "solution": 4, "level": "easy"}\n')
    rows = load_rows(DataConfig(source=str(source), answer_column="solution"))
    (row,) = pq.read_table(write_parquet(rows, tmp_path / "train.parquet")).to_pylist()
    assert row["prompt"] == [{"role": "user", "content": "2+2?"}]
    assert row["reward_model"]["ground_truth"] == "4"
    assert columns_from_extra_info(row["extra_info"]) == {"solution": 4, "level": "easy", "answer": 4}


def test_verl_rejects_what_it_cannot_run_here_at_validation():
    from retrain.core.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_data({"backend": "verl", "model_to_train": "retrain:tiny", "example_prompts": ["p"],
                                  "algorithm": {"kl_coef": 0.1, "reward_scaling": "batch"}})
    fields = {issue.field for issue in info.value.issues}
    assert fields == {"algorithm.kl_coef", "algorithm.reward_scaling"}


def test_gpus_get_verls_vllm_rollout_and_micro_batches_that_divide_the_batch():
    """The GPU path composes and passes verl's validate_config (run for real only with the gpu mark)."""
    from retrain.backends.verl import backend

    source = config(backend="verl", algorithm={"prompts_per_step": 6, "group_size": 8},
                    resources={"gpus_per_node": 4}, model={"name": "retrain:tiny", "dtype": "float16"})
    composed = backend.translate(source).settings["composed"]
    rollout, actor = composed["actor_rollout_ref"]["rollout"], composed["actor_rollout_ref"]["actor"]
    assert (rollout["name"], rollout["dtype"]) == ("vllm", "float16")
    assert actor["fsdp_config"]["mixed_precision"]["param_dtype"] == "fp16"
    assert actor["ppo_micro_batch_size_per_gpu"] == 12  # 48 completions / 4 GPUs, largest divisor <= 16
    assert composed["trainer"]["n_gpus_per_node"] == 4 and composed["trainer"]["device"] == "cuda"


def test_rollout_settings_reach_verls_vllm_rollout():
    from retrain.backends.verl import backend

    source = config(backend="verl", resources={"gpus_per_node": 2},
                    rollout={"gpu_memory_utilization": 0.6, "tensor_parallel_size": 2})  # auto: vLLM on GPUs
    rollout = backend.translate(source).settings["composed"]["actor_rollout_ref"]["rollout"]
    assert (rollout["name"], rollout["gpu_memory_utilization"], rollout["tensor_model_parallel_size"]) == (
        "vllm", 0.6, 2)
    default = backend.translate(config(backend="verl", resources={"gpus_per_node": 1}))
    assert default.settings["composed"]["actor_rollout_ref"]["rollout"]["gpu_memory_utilization"] == 0.5  # verl's


@pytest.mark.parametrize(("sections", "field", "words"), [
    ({"rollout": {"engine": "vllm"}}, "rollout.engine", "vLLM needs GPUs"),
    ({"rollout": {"engine": "transformers"}, "resources": {"gpus_per_node": 1}}, "rollout.engine",
     "verl on GPUs generates with vLLM"),
    ({"rollout": {"vllm_mode": "server"}, "resources": {"gpus_per_node": 1}}, "rollout.vllm_mode", "'server' mode"),
    ({"rollout": {"engine": "transformers", "gpu_memory_utilization": 0.5}}, "rollout.gpu_memory_utilization",
     "engine is transformers"),
    ({"rollout": {"tensor_parallel_size": 3}, "resources": {"gpus_per_node": 4}}, "rollout.tensor_parallel_size",
     "cannot be split"),
    ({"model": {"name": "retrain:tiny", "loader": "unsloth"}}, "model.loader", "use `backend: trl`"),
    ({"backend_options": {"verl": {"actor_rollout_ref.rollout.gpu_memory_utilization": 0.4}}},
     "backend_options.verl.actor_rollout_ref.rollout.gpu_memory_utilization", "rollout.gpu_memory_utilization"),
])
def test_verl_rejects_rollout_settings_it_cannot_honour(sections, field, words):
    with pytest.raises(ConfigError) as info:
        config(backend="verl", **sections)
    assert any(issue.field == field and words in issue.message for issue in info.value.issues), info.value


def test_vllm_settings_on_a_cpu_run_are_noted_unused_not_refused():
    """The same YAML serves a GPU machine: with engine auto, a CPU run generates with transformers."""
    from retrain.backends.verl import backend

    native = backend.translate(config(backend="verl", rollout={"gpu_memory_utilization": 0.5}))
    assert "rollout.gpu_memory_utilization unused: a CPU run generates with transformers" in native.notes


def test_cpu_gets_the_hf_rollout_in_float32():
    from retrain.backends.verl import backend

    composed = backend.translate(config(backend="verl")).settings["composed"]
    assert composed["actor_rollout_ref"]["rollout"]["name"] == "hf"
    assert composed["actor_rollout_ref"]["actor"]["fsdp_config"]["mixed_precision"]["param_dtype"] == "fp32"
    assert composed["trainer"]["device"] == "cpu"


def test_ray_address_connects_instead_of_starting_a_local_ray(tmp_path):
    from retrain.backends.verl.launch import run_overrides
    from retrain.core.run_dir import RunDir

    run_dir = RunDir.create(tmp_path, "r")
    on_cluster = run_overrides(config(backend="verl", resources={"ray_address": "10.0.0.1:6379"}), run_dir, "/m", {},
                               prompt_length=64)
    assert "+ray_kwargs.ray_init.address='10.0.0.1:6379'" in on_cluster
    assert not [o for o in on_cluster if "num_cpus" in o or "num_gpus" in o]
    local = run_overrides(config(), run_dir, "/m", {}, prompt_length=64)
    assert "+ray_kwargs.ray_init.num_gpus=1" in local and not [o for o in local if ".address=" in o]


@pytest.mark.parametrize(("sections", "field", "words"), [
    ({"resources": {"nodes": 2, "gpus_per_node": 8}}, "resources.nodes", "ray_address"),
    ({"resources": {"gpus_per_node": 3}, "algorithm": {"prompts_per_step": 1, "group_size": 4}},
     "algorithm.prompts_per_step", "multiple of 3"),
    ({"model": {"name": "retrain:tiny", "dtype": "bfloat16"}}, "model.dtype", "float32"),
    ({"algorithm": {"kl_coef": 0.1}}, "algorithm.kl_coef", "model.lora"),
])
def test_verl_rejects_what_the_machine_cannot_run(sections, field, words):
    from retrain.core.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_data({"backend": "verl", "model": {"name": "retrain:tiny"}, "example_prompts": ["p"],
                                  **sections})
    (issue,) = info.value.issues
    assert issue.field == field and words in issue.message


def test_trl_rejects_a_ray_address():
    from retrain.core.errors import ConfigError

    with pytest.raises(ConfigError, match="resources.ray_address"):
        TrainingConfig.from_data({"backend": "trl", "model_to_train": "retrain:tiny", "example_prompts": ["p"],
                                  "resources": {"ray_address": "auto"}})


@pytest.mark.parametrize(("key", "field"), [
    ("data.train_batch_size", "algorithm.prompts_per_step"),
    ("actor_rollout_ref.rollout.n", "algorithm.group_size"),
    ("actor_rollout_ref.actor.optim.lr", "algorithm.learning_rate"),
    ("actor_rollout_ref.actor.optim.weight_decay", "optimizer.weight_decay"),
    ("trainer.logger", "logging.trackers"),
    ("+actor_rollout_ref.actor.optim.override_optimizer_config.eps", "optimizer.eps"),
])
def test_a_raw_override_of_a_key_retrain_owns_names_the_field_to_use(key, field):
    """One rule on every backend: what retrain sets from its config cannot be set behind its back."""
    with pytest.raises(ConfigError) as info:
        config(backend="verl", backend_options={"verl": {key: 1}})
    (issue,) = info.value.issues
    assert issue.field == f"backend_options.verl.{key}" and issue.message == f"set this through `{field}` instead"


def test_a_harmless_raw_override_passes_and_reaches_the_composed_config():
    from retrain.backends.verl import backend

    composed = backend.translate(config(backend="verl", backend_options={
        "verl": {"actor_rollout_ref.actor.clip_ratio_c": 5.0}})).settings["composed"]
    assert composed["actor_rollout_ref"]["actor"]["clip_ratio_c"] == 5.0


def test_the_optimizer_and_schedule_reach_verl_explicitly():
    from retrain.backends.verl import backend

    composed = backend.translate(config(backend="verl", algorithm={"max_steps": 10}, optimizer={
        "weight_decay": 0.05, "betas": [0.9, 0.95], "eps": 1e-6, "max_grad_norm": 0.3, "lr_scheduler": "cosine",
        "warmup_ratio": 0.25, "min_lr_ratio": 0.1})).settings["composed"]
    optim = composed["actor_rollout_ref"]["actor"]["optim"]
    assert (optim["weight_decay"], optim["betas"], optim["override_optimizer_config"], optim["clip_grad"]) == (
        0.05, [0.9, 0.95], {"eps": 1e-6}, 0.3)
    assert (optim["lr_scheduler_type"], optim["lr_warmup_steps"], optim["min_lr_ratio"]) == ("cosine", 2, 0.1)


def test_a_revision_reaches_verl_through_the_snapshot_it_loads():
    from retrain.backends.verl import backend

    native = backend.translate(config(backend="verl", model={"name": "org/model", "revision": "v2"}))
    assert native.settings["model"]["revision"] == "v2"


def test_a_revision_of_a_local_or_built_in_model_is_an_error():
    with pytest.raises(ConfigError) as info:
        config(backend="verl", model={"name": "retrain:tiny", "revision": "main"})
    assert info.value.issues[0].field == "model.revision"


def test_lora_on_gpus_without_vllm_is_a_validation_error_not_a_translate_traceback():
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed: verl's LoRA check runs")
    with pytest.raises(ConfigError) as info:
        config(backend="verl", model={"name": "retrain:tiny", "lora": {"r": 4}}, resources={"gpus_per_node": 1})
    assert info.value.issues[0].field == "model.lora" and "retrain[verl,vllm]" in info.value.issues[0].message
