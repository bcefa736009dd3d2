"""`rollout` on TRL: which engine each machine gets, the GRPOConfig fields it sets, and the clear errors.

vLLM needs CUDA and is not installed on the CPU machines this suite runs on. Where a test needs
"vLLM is installed", `vllm_stand_in` puts an empty `vllm` package on the path: only
`importlib.util.find_spec` sees it (the validation and the engine choice), nothing imports it.
The real vLLM runs are in tests/backends/trl/test_gpu.py (marked `gpu`).
"""

from __future__ import annotations

import importlib.util

import pytest
from trl import GRPOConfig

from retrain.backends.trl.translate import DEFAULT_VLLM_SERVER, grpo_config_kwargs, resolve_engine
from retrain.config_models import TrainingConfig
from retrain.core.errors import BackendError, ConfigError
from tests.tiny_runs import no_gpu, stand_in_package


@pytest.fixture
def vllm_stand_in(tmp_path, monkeypatch):
    stand_in_package("vllm", tmp_path, monkeypatch)


def config(**sections) -> TrainingConfig:
    return TrainingConfig.from_data({"model": {"name": "retrain:tiny"}, "example_prompts": ["p"], **sections})


def kwargs_on(source: TrainingConfig, cuda: bool, has_vllm: bool) -> tuple[dict, list[str]]:
    return grpo_config_kwargs(source, "out", cuda=cuda, bf16_supported=cuda, has_vllm=has_vllm)


def test_auto_generates_with_transformers_on_a_cpu():
    kwargs, notes = kwargs_on(config(), cuda=False, has_vllm=True)
    assert kwargs["use_vllm"] is False and "rollout: transformers (no GPU)" in notes


def test_auto_takes_vllm_colocated_on_a_gpu_with_vllm_installed():
    kwargs, notes = kwargs_on(config(), cuda=True, has_vllm=True)
    assert {k: v for k, v in kwargs.items() if "vllm" in k} == {
        "use_vllm": True, "vllm_mode": "colocate", "vllm_tensor_parallel_size": 1,  # TRL's memory default stays
        # TRL's importance-sampling correction is on by default; retrain's is off, as verl's.
        "vllm_importance_sampling_correction": False, "vllm_importance_sampling_mode": "token_truncate",
        "vllm_importance_sampling_clip_max": 2.0}
    assert "rollout: vLLM (GPU and vllm found)" in notes


def test_auto_on_a_gpu_without_vllm_says_how_to_get_it():
    kwargs, notes = kwargs_on(config(), cuda=True, has_vllm=False)
    assert kwargs["use_vllm"] is False
    assert any("pip install 'retrain[vllm]'" in note for note in notes)


def test_auto_keeps_transformers_for_environments():
    kwargs, notes = kwargs_on(config(environment={"tools": ["calculator"]}), cuda=True, has_vllm=True)
    assert kwargs["use_vllm"] is False and any("environments" in note for note in notes)


def test_colocate_settings_land_on_trls_fields_and_trl_accepts_them(vllm_stand_in, tmp_path):
    source = config(rollout={"engine": "vllm", "gpu_memory_utilization": 0.45, "tensor_parallel_size": 2},
                    resources={"gpus_per_node": 2})
    kwargs, _ = grpo_config_kwargs(source, str(tmp_path), cuda=False, bf16_supported=False, has_vllm=True)
    args = GRPOConfig(**kwargs)
    assert (args.use_vllm, args.vllm_mode, args.vllm_gpu_memory_utilization, args.vllm_tensor_parallel_size) == (
        True, "colocate", 0.45, 2)


@pytest.mark.parametrize("url", [None, "https://gpu-box:8123"])
def test_server_mode_points_trl_at_the_server(vllm_stand_in, tmp_path, url):
    rollout = {"vllm_mode": "server", **({"server_url": url} if url else {})}
    kwargs, notes = grpo_config_kwargs(config(rollout=rollout), str(tmp_path), False, False, has_vllm=True)
    args = GRPOConfig(**kwargs)
    assert (args.use_vllm, args.vllm_mode, args.vllm_server_base_url) == (True, "server", url or DEFAULT_VLLM_SERVER)
    assert "vllm_gpu_memory_utilization" not in kwargs and "rollout: vLLM server (vllm_mode: server)" in notes


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_asking_for_vllm_where_it_is_not_installed_is_a_validation_error():
    with pytest.raises(ConfigError) as info:
        config(rollout={"engine": "vllm"})
    (issue,) = info.value.issues
    assert issue.field == "rollout.engine" and "pip install 'retrain[vllm]'" in issue.message


def test_an_explicit_engine_is_kept_whatever_the_machine(vllm_stand_in):
    assert resolve_engine(config(rollout={"engine": "transformers"}), cuda=True, vllm_installed=True)[0] == (
        "transformers")
    assert resolve_engine(config(rollout={"engine": "vllm"}), cuda=False, vllm_installed=True)[0] == "vllm"


@no_gpu
def test_vllm_without_a_gpu_stops_before_loading_anything(vllm_stand_in, tmp_path):
    """Validation cannot know the machine (configs are validated on laptops for GPU boxes); the start can."""
    from retrain.backends.trl.launch import build_trainer
    from retrain.core.progress import ProgressReporter
    from retrain.core.run_dir import RunDir

    run_dir = RunDir.create(tmp_path, "vllm-on-cpu")
    with pytest.raises(BackendError, match="vLLM needs a CUDA GPU and none is visible"):
        build_trainer(config(rollout={"engine": "vllm"}), run_dir, ProgressReporter(enabled=False))


def test_trls_own_vllm_switches_point_to_the_rollout_section():
    with pytest.raises(ConfigError) as info:
        config(backend_options={"trl": {"use_vllm": True, "vllm_mode": "server", "vllm_server_port": 8001}})
    assert {(issue.field, issue.message) for issue in info.value.issues} == {
        ("backend_options.trl.use_vllm", "set this through `rollout.engine` instead"),
        ("backend_options.trl.vllm_mode", "set this through `rollout.vllm_mode` instead"),
        ("backend_options.trl.vllm_server_port", "set this through `rollout.server_url` instead"),
    }


def test_translate_shows_the_engine_and_why(vllm_stand_in):
    from retrain.backends.trl.translate import translate_config

    native = translate_config(config(rollout={"engine": "vllm", "gpu_memory_utilization": 0.3}), cuda=True,
                              bf16_supported=True)
    assert native.settings["GRPOConfig"]["vllm_gpu_memory_utilization"] == 0.3
    assert "# rollout: vllm (asked for)" in native.render()


def test_colocated_tensor_parallel_must_divide_the_processes(vllm_stand_in):
    with pytest.raises(ConfigError) as info:
        config(rollout={"engine": "vllm", "tensor_parallel_size": 2}, resources={"gpus_per_node": 3},
               algorithm={"prompts_per_step": 3})
    assert [issue.field for issue in info.value.issues] == ["rollout.tensor_parallel_size"]


def test_vllm_settings_with_transformers_generation_are_an_error():
    with pytest.raises(ConfigError) as info:
        config(rollout={"engine": "transformers", "gpu_memory_utilization": 0.5})
    assert [issue.field for issue in info.value.issues] == ["rollout.gpu_memory_utilization"]


def test_auto_falling_back_to_transformers_says_the_vllm_settings_are_unused():
    _, notes = kwargs_on(config(rollout={"gpu_memory_utilization": 0.5}), cuda=False, has_vllm=False)
    assert any("gpu_memory_utilization unused" in note for note in notes)
