"""`algorithm.name` presets, their checks, the overlong reward, dynamic sampling's bookkeeping and `compare --set`."""

from __future__ import annotations

import asyncio

import pytest

from retrain.core.config import TrainingConfig
from retrain.core.config.algorithm import PRESETS, AlgorithmConfig
from retrain.core.errors import ConfigError
from retrain.core.rollout import Message, Rollout


def config(algorithm: dict, backend: str = "trl", **sections) -> TrainingConfig:
    return TrainingConfig.from_data({"backend": backend, "model": "retrain:tiny", "example_prompts": ["a"],
                                     "algorithm": algorithm, **sections})


def issues(algorithm: dict, backend: str = "trl") -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        config(algorithm, backend)
    return {issue.field: issue.message for issue in info.value.issues}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_fills_what_the_config_does_not_write(name):
    algorithm = AlgorithmConfig(name=name)
    for key, value in PRESETS[name].items():
        if not callable(value) and key != "critic":
            assert getattr(algorithm, key) == value, key
    assert algorithm.model_fields_set == {"name"}  # the preset's values are not counted as the user's


def test_an_option_written_in_the_config_overrides_the_preset():
    algorithm = AlgorithmConfig(name="dapo", clip_range_high=0.3, max_completion_tokens=500)
    assert algorithm.clip_range_high == 0.3
    assert algorithm.dynamic_sampling is True
    assert algorithm.overlong_buffer == 100  # a fifth of the completion budget, read after the user's value


def test_grpo_keeps_both_libraries_default_aggregation():
    """`grpo` is what TRL's GRPOTrainer and verl's grpo estimator do by default: token-mean."""
    assert AlgorithmConfig().loss_aggregation == "dapo"
    assert AlgorithmConfig().expanded()["advantage"] == "grpo"


def test_a_saved_config_round_trips_with_its_preset():
    for name in PRESETS:
        backend = "verl" if name in ("reinforce_pp", "reinforce_pp_baseline", "ppo", "dapo") else "trl"
        saved = config({"name": name}, backend).to_yaml_dict()
        again = TrainingConfig.from_data(saved)
        assert again.algorithm == config({"name": name}, backend).algorithm


@pytest.mark.parametrize(("algorithm", "field", "words"), [
    ({"name": "sapo", "loss_aggregation": "dapo"}, "algorithm.loss_aggregation", "sapo averages per sequence"),
    ({"name": "cispo", "clip_range": 0.1}, "algorithm.clip_range", "remove clip_range"),
    ({"name": "cispo", "loss_aggregation": "grpo"}, "algorithm.loss_aggregation", "cispo averages"),
    ({"name": "grpo", "critic": {}}, "algorithm.critic", "remove critic"),
    ({"name": "ppo", "critic": None}, "algorithm.critic", "needs a critic"),
    ({"name": "reinforce_pp", "reward_scaling": "group"}, "algorithm.reward_scaling", "scaled 'batch'"),
    ({"name": "rloo", "reward_scaling": "group"}, "algorithm.reward_scaling", "set reward_scaling: none"),
    ({"name": "dapo", "overlong_buffer": 500}, "algorithm.overlong_buffer", "more than max_completion_tokens"),
])
def test_options_that_do_not_fit_are_errors_naming_the_field(algorithm, field, words):
    found = issues(algorithm, "verl")
    assert field in found, found
    assert words in found[field]


@pytest.mark.parametrize(("name", "words"), [
    ("reinforce_pp", "has no 'reinforce_pp' advantage estimator (part of algorithm 'reinforce_pp'); "
                     "use `backend: verl`"),
    ("ppo", "has no 'gae' advantage estimator"),
    ("dapo", "has no dynamic sampling (part of algorithm 'dapo'); use `backend: verl` (or set "
             "algorithm.dynamic_sampling: false)"),
])
def test_an_algorithm_trl_lacks_names_verl_on_the_name_the_user_wrote(name, words):
    assert words in issues({"name": name})["algorithm.name"]


def test_a_part_the_user_wrote_is_reported_on_that_field():
    found = issues({"name": "grpo", "advantage": "reinforce_pp", "reward_scaling": "batch"})
    assert "algorithm.advantage" in found and "algorithm.name" not in found


def test_trl_rejects_the_combinations_its_trainers_lack():
    assert "RLOOTrainer sums" in issues({"name": "rloo", "loss_aggregation": "dapo"})["algorithm.loss_aggregation"]
    assert "RLOOTrainer has no entropy" in issues({"name": "rloo", "entropy_coef": 0.01})["algorithm.entropy_coef"]
    grpo_kl_in_reward = issues({"name": "grpo", "kl_coef": 0.1, "kl_placement": "reward"})
    assert "puts the KL in the loss" in grpo_kl_in_reward["algorithm.kl_placement"]
    on_a_gpu = {"resources": {"gpus_per_node": 1}}  # (verl on a CPU runs a KL term only with LoRA)
    verl = config({"name": "grpo", "kl_coef": 0.1, "kl_placement": "reward"}, "verl", **on_a_gpu)
    assert verl.algorithm.kl_placement == "reward"


def test_translate_maps_each_policy_loss_to_trls_own_fields():
    from retrain.backends.trl.translate import grpo_config_kwargs, trainer_names

    def kwargs(name: str) -> dict:
        return grpo_config_kwargs(config({"name": name}), "/tmp/out", False, False)[0]

    assert kwargs("gspo")["importance_sampling_level"] == "sequence" and kwargs("gspo")["loss_type"] == "grpo"
    assert kwargs("cispo")["loss_type"] == "cispo" and kwargs("cispo")["epsilon_high"] == 5.0
    assert kwargs("sapo")["loss_type"] == "sapo" and kwargs("sapo")["sapo_temperature_neg"] == 1.05
    assert kwargs("dr_grpo")["loss_type"] == "dr_grpo" and kwargs("dr_grpo")["scale_rewards"] == "none"
    rloo = kwargs("rloo")
    assert "loss_type" not in rloo and rloo["normalize_advantages"] is False
    assert trainer_names(config({"name": "rloo"})) == ("RLOOConfig", "RLOOTrainer")


def test_translate_maps_each_algorithm_to_verls_own_keys():
    from retrain.backends.verl.translate import algorithm_overrides

    def overrides(name: str, **extra) -> dict[str, str]:
        gpu = {"resources": {"gpus_per_node": 1}}
        return dict(o.split("=", 1) for o in algorithm_overrides(config({"name": name, **extra}, "verl", **gpu)))

    assert overrides("reinforce_pp")["algorithm.adv_estimator"] == "reinforce_plus_plus"
    assert overrides("rloo")["actor_rollout_ref.actor.loss_agg_mode"] == "seq-mean-token-sum"
    rloo_kl = overrides("rloo", kl_coef=0.05)
    assert rloo_kl["algorithm.use_kl_in_reward"] == "true" and rloo_kl["algorithm.kl_penalty"] == "kl"
    assert rloo_kl["actor_rollout_ref.actor.use_kl_loss"] == "false"
    assert overrides("dapo")["+algorithm.filter_groups"].startswith("{enable:true,metric:reward")
    ppo = overrides("ppo")
    assert ppo["algorithm.adv_estimator"] == "gae" and ppo["critic.cliprange_value"] == "0.5"
    assert overrides("sapo")["actor_rollout_ref.actor.policy_loss.loss_mode"] == "sapo"


def test_translate_shows_what_the_name_expanded_to(tmp_path):
    from typer.testing import CliRunner

    from retrain.cli import app

    path = tmp_path / "c.yaml"
    path.write_text("model: retrain:tiny\nexample_prompts: [a]\nalgorithm: {name: gspo}\n")
    result = CliRunner().invoke(app, ["translate", str(path)])
    assert result.exit_code == 0, result.output
    assert "algorithm 'gspo' expands to:" in result.output
    assert "policy_loss: gspo" in result.output


# -- DAPO's overlong punishment, a reward component ------------------------------------------------------

def overlong(tokens: int, max_tokens: int = 20, buffer: int = 5) -> float:
    from retrain.rewards.text import overlong_penalty

    rollout = Rollout([Message("user", "q")], [Message("assistant", "a")], completion_token_ids=[1] * tokens)
    return overlong_penalty(rollout, max_tokens=max_tokens, buffer_tokens=buffer)


def test_the_overlong_penalty_is_verls_dapo_formula():
    assert overlong(15) == 0.0  # up to max - buffer: no penalty
    assert overlong(17) == pytest.approx(-0.4)
    assert overlong(20) == pytest.approx(-1.0)


def test_the_dapo_preset_adds_the_overlong_component_to_the_scorer():
    from retrain.core.scoring import Scorer

    dapo = config({"name": "dapo", "dynamic_sampling": False, "max_completion_tokens": 20})
    scorer = Scorer.from_config(dapo)
    assert scorer.names("reward") == ["overlong"]
    rollout = Rollout([Message("user", "q")], [Message("assistant", "a")], completion_token_ids=[1] * 20,
                      trainable_mask=[1] * 20)
    (breakdown,) = asyncio.run(scorer.score([rollout]))
    assert breakdown.total == pytest.approx(-1.0)


def test_a_reward_named_overlong_beside_the_buffer_is_an_error():
    with pytest.raises(ConfigError) as info:
        config({"name": "dapo", "dynamic_sampling": False},
               rewards={"functions": [{"function": "length", "name": "overlong"}]})
    assert "'overlong' repeats" in str(info.value)


# -- dynamic sampling's bookkeeping on verl --------------------------------------------------------------

def sample(group: str, total: float) -> dict:
    return {"group": group, "breakdown": {"total": total, "rollout_id": "row0"}}


def test_a_dynamic_sampling_step_reports_the_groups_it_trained_on():
    from retrain.backends.verl.launch import kept_groups

    scored = [sample("a", 1.0), sample("a", 1.0), sample("b", 0.0), sample("b", 1.0),
              sample("c", 0.5), sample("c", 0.5), sample("d", 0.0), sample("d", 0.2)]
    assert [s["group"] for s in kept_groups(scored, 2)] == ["b", "b", "d", "d"]


# -- compare --set -------------------------------------------------------------------------------------

def test_set_makes_a_grid_with_readable_labels():
    from retrain.compare import parse_sets

    variants = parse_sets(["algorithm.name=grpo,rloo", "algorithm.learning_rate=1e-5,2e-5"])
    assert [v.label("trl") for v in variants] == [
        "trl name=grpo learning_rate=1e-5", "trl name=grpo learning_rate=2e-5",
        "trl name=rloo learning_rate=1e-5", "trl name=rloo learning_rate=2e-5"]
    assert variants[0].fields == {"algorithm.name": "grpo", "algorithm.learning_rate": 1e-5}
    assert [v.label("verl") for v in parse_sets(["algorithm.name=grpo,dapo"])] == ["verl grpo", "verl dapo"]
    # A field with one value applies to all and names none (DAPO without dynamic sampling, for TRL)
    same = parse_sets(["algorithm.name=grpo,dapo", "algorithm.dynamic_sampling=false"])
    assert [v.label("trl") for v in same] == ["trl grpo", "trl dapo"]
    assert same[1].fields == {"algorithm.name": "dapo", "algorithm.dynamic_sampling": False}


@pytest.mark.parametrize("option", ["algorithm.name", "algorithm.name=", "=grpo", "algorithm..name=a",
                                    "algorithm.name=a,a"])
def test_a_bad_set_option_is_an_error_naming_it(option):
    from retrain.compare import parse_sets

    with pytest.raises(ConfigError) as info:
        parse_sets([option])
    assert info.value.issues[0].field == "--set"


def test_a_grid_marks_what_the_variants_change_and_still_catches_a_backend_difference():
    from retrain.compare import VARIED, Variant, grid_settings

    variants = [Variant("grpo", {"algorithm.name": "grpo"}), Variant("gspo", {"algorithm.name": "gspo"})]
    configs = {v.label(b): config({"name": v.name}, b) for v in variants for b in ("trl", "verl")}
    rows, within = grid_settings(configs, variants, ["trl", "verl"])
    assert within == []
    by_key = {row.key: row for row in rows}
    assert by_key["loss.ratio"].reason == VARIED  # clipped per token vs per sequence: the variants' doing
    configs["verl gspo"] = config({"name": "gspo", "clip_range_high": 0.5}, "verl")
    _, within = grid_settings(configs, variants, ["trl", "verl"])
    assert "clip.high" in {row.key for row in within}


def test_a_set_field_is_validated_like_the_file(tmp_path):
    from retrain.compare import _validate_all, parse_sets

    path = tmp_path / "c.yaml"
    path.write_text("model: retrain:tiny\nexample_prompts: [a]\n")
    with pytest.raises(ConfigError) as info:
        _validate_all(path, ["trl"], {}, parse_sets(["algorithm.name=grpo,reinforce_pp"]))
    assert any("--set reinforce_pp" in issue.message and issue.field == "algorithm.name"
               for issue in info.value.issues)


def test_dynamic_sampling_that_cannot_fill_a_batch_is_said_once(tmp_path):
    """verl's replay buffer has no limit on how many groups it generates for a step: when ten batches' worth
    were scored without a step, the run says why it may not end (the watcher reads breakdowns.jsonl)."""
    import io
    import json

    from rich.console import Console

    from retrain.backends.verl.launch import STALL_BATCHES, MetricsWatcher
    from retrain.core.progress import ProgressReporter
    from retrain.core.run_dir import RunDir

    run_dir = RunDir.create(tmp_path, "run")
    (run_dir.path / "verl").mkdir()
    output = io.StringIO()
    progress = ProgressReporter(Console(file=output, width=400))
    watcher = MetricsWatcher(run_dir, progress, scorer=None, first_step=0, samples_per_step=0, batch_size=8,
                             group_size=4)
    watcher.dynamic_sampling = True
    line = json.dumps(sample("g", 1.0)) + "\n"
    (run_dir.path / "verl" / "breakdowns.jsonl").write_text(line * (STALL_BATCHES * 8 - 1))
    watcher.poll()
    assert "dynamic sampling" not in output.getvalue()
    with (run_dir.path / "verl" / "breakdowns.jsonl").open("a") as file:
        file.write(line * 9)
    watcher.poll()
    watcher.poll()
    assert output.getvalue().count("dynamic sampling has scored 88 completions since the last step") == 1
    assert "2 groups differ" in output.getvalue()
