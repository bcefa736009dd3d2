"""The config schema: the conceptual form validates, and every error names field, file, line and fix."""

from __future__ import annotations

import pytest

from retrain.config_models import TrainingConfig
from retrain.core.errors import ConfigError


def _error(write_config, text: str) -> ConfigError:
    path = write_config(text)
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_yaml(path)
    return info.value


def test_conceptual_cat_poem_yaml_validates_into_the_structured_schema(cat_poem_path):
    config = TrainingConfig.from_yaml(cat_poem_path)
    assert config.backend == "trl"
    assert config.model.name == "retrain:smollm2-135m-instruct"
    assert config.task.startswith("Write happy cat poems")
    assert config.data.prompts == ["Compose a joyful feline lyric.", "Draft a cheerful ode to a purring companion."]
    assert [v.rule for v in config.verifiers] == ["is_actually_a_poem", "mentions_a_cat"]
    assert config.rewards.goal == "Poem is happy, creative, and about a cat."
    assert config.rewards.constraints[0].penalty_score == -100.0


def test_training_config_is_exported_from_the_package_root():
    import retrain

    assert retrain.TrainingConfig is TrainingConfig


def test_unknown_key_suggests_the_near_miss_with_file_and_line(write_config):
    error = _error(write_config, """\
        model_to_train: retrain:tiny
        example_prompts: ["hi"]
        algorithm:
          group_sise: 4
        """)
    (issue,) = error.issues
    assert issue.field == "algorithm.group_sise"
    assert issue.line == 4
    assert "did you mean 'group_size'" in issue.message
    assert f"{error.source}:4" in error.render()


def test_unknown_top_level_key_suggests_an_alias(write_config):
    error = _error(write_config, """\
        model_to_trian: retrain:tiny
        example_prompts: ["hi"]
        """)
    assert any("did you mean 'model_to_train'" in i.message for i in error.issues)


def test_wrong_type_names_the_field_the_line_and_what_is_expected(write_config):
    error = _error(write_config, """\
        model_to_train: retrain:tiny
        example_prompts: ["hi"]
        algorithm:
          max_steps: lots
        """)
    (issue,) = error.issues
    assert (issue.field, issue.line) == ("algorithm.max_steps", 4)
    assert "expected a whole number" in issue.message


def test_errors_under_an_alias_point_at_the_alias_line(write_config):
    error = _error(write_config, """\
        model_to_train: retrain:tiny
        example_prompts: []
        """)
    (issue,) = error.issues
    assert issue.line == 2
    assert "empty" in issue.message


def test_group_size_one_is_rejected(write_config):
    error = _error(write_config, """\
        model_to_train: retrain:tiny
        example_prompts: ["hi"]
        algorithm: {group_size: 1}
        """)
    assert error.issues[0].field == "algorithm.group_size"
    assert "greater than or equal to 2" in error.issues[0].message


def test_yaml_syntax_error_gives_the_line(write_config):
    error = _error(write_config, "model_to_train: retrain:tiny\nexample_prompts: [\"hi\"\nbackend: trl\n")
    assert error.issues[0].line is not None
    assert "invalid YAML" in error.issues[0].message


def test_tab_indentation_is_named(write_config):
    error = _error(write_config, "algorithm:\n\tgroup_size: 4\n")
    assert error.issues[0].line == 2
    assert "tab" in error.issues[0].message


def test_duplicate_keys_are_an_error_not_last_wins(write_config):
    error = _error(write_config, "model_to_train: retrain:tiny\nexample_prompts: [a]\nbackend: trl\nbackend: trl\n")
    assert "duplicate key 'backend'" in error.issues[0].message
    assert error.issues[0].line == 4


def test_unknown_verifier_suggests_the_builtin(write_config):
    error = _error(write_config, """\
        model_to_train: retrain:tiny
        example_prompts: ["hi"]
        verifiers:
          - rule: is_actualy_a_poem
        """)
    (issue,) = error.issues
    assert (issue.field, issue.line) == ("verifiers[0].rule", 4)
    assert "did you mean 'is_actually_a_poem'" in issue.message


def test_import_path_that_does_not_exist_is_named(write_config):
    error = _error(write_config, """\
        model_to_train: retrain:tiny
        example_prompts: ["hi"]
        rewards:
          functions:
            - function: no_such_module_xyz:score
        """)
    assert "cannot import module 'no_such_module_xyz'" in error.issues[0].message
    assert error.issues[0].line == 5


def test_unknown_backend_lists_the_available_ones(write_config):
    error = _error(write_config, "backend: trll\nmodel_to_train: retrain:tiny\nexample_prompts: [a]\n")
    assert "did you mean 'trl'" in error.issues[0].message
    assert error.issues[0].line == 1


def test_model_path_that_does_not_exist_is_rejected(write_config):
    error = _error(write_config, "model_to_train: ./no/such/model\nexample_prompts: [a]\n")
    assert error.issues[0].field == "model_to_train (model.name)"  # as written, with the full name
    assert "neither a local folder" in error.issues[0].message


def test_prompts_not_divisible_across_gpus_is_rejected(write_config):
    error = _error(write_config, """\
        model_to_train: retrain:tiny
        example_prompts: ["hi"]
        algorithm: {prompts_per_step: 1, group_size: 4}
        resources: {gpus_per_node: 3}
        """)
    assert error.issues[0].field == "algorithm.prompts_per_step"
    assert "3 processes" in error.issues[0].message
    assert error.issues[0].line == 3


def test_structured_form_and_dict_input_validate():
    config = TrainingConfig.from_data({
        "model": {"name": "retrain:tiny", "lora": {"r": 4}},
        "data": {"prompts": ["a", "b"]},
        "rewards": {"functions": [{"function": "contains", "params": {"text": "cat"}, "weight": 2}]},
    })
    assert config.model.lora.r == 4
    assert config.rewards.functions[0].weight == 2


def test_empty_file_is_a_clear_error(write_config):
    error = _error(write_config, "")
    assert "found an empty file" in error.issues[0].message


def test_an_unbounded_constraint_under_the_floor_gate_names_its_line(write_config):
    error = _error(write_config, """\
        model_to_train: retrain:tiny
        example_prompts: ["hi"]
        verifiers: [{rule: mentions_a_cat}]
        rewards:
          constraints:
            - type: penalize_text_containing
              text_to_avoid: s
              penalty_score: -1
              mode: count
        """)
    (issue,) = error.issues
    assert (issue.field, issue.line) == ("rewards.constraints[0]", 6)
    assert "gate: penalty" in issue.message


def test_environment_errors_name_the_field_and_the_fix(write_config):
    error = _error(write_config, """\
        model_to_train: retrain:tiny
        example_prompts: ["hi"]
        environment:
          type: tools
          tools: [calculater]
        """)
    assert error.issues[0].field == "environment.tools" and "did you mean 'calculator'" in error.issues[0].message
    assert error.issues[0].line == 5
    error = _error(write_config, """\
        model_to_train: retrain:tiny
        example_prompts: ["hi"]
        environment: {type: tools}
        """)
    assert error.issues[0].field == "environment" and "needs `tools`" in error.issues[0].message
    error = _error(write_config, """\
        model_to_train: retrain:tiny
        example_prompts: ["hi"]
        environment: {tools: [calculator]}
        rollout: {engine: vllm}
        """)
    assert error.issues[0].field == "rollout.engine" and error.issues[0].line == 4
    assert "environments on TRL generate with transformers" in error.issues[0].message


def test_an_environment_config_validates():
    config = TrainingConfig.from_data({
        "model_to_train": "retrain:tiny", "example_prompts": ["hi"],
        "environment": {"tools": ["calculator"], "mcp_servers": [{"name": "m", "command": "python", "args": ["s.py"],
                                                                  "env": {"TOKEN": "x"}}], "max_turns": 3},
    })
    assert config.environment.max_turns == 3 and config.environment.mcp_servers[0].env == {"TOKEN": "x"}


def test_a_backend_whose_libraries_are_missing_is_one_clear_error(monkeypatch):
    """As after `make quickstart` (TRL only) with `--backend verl`: simulated by hiding omegaconf from find_spec."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "omegaconf" else real(name, *a))
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_data({"backend": "verl", "model": "retrain:tiny", "example_prompts": ["p"]})
    (issue,) = info.value.issues
    assert issue.field == "backend" and "needs omegaconf" in issue.message
    assert "pip install 'retrain[verl]'" in issue.message


def test_an_openenv_environment_without_openenv_says_what_to_install_and_where():
    """The dev environment has the `mcp` extra, so it cannot have OpenEnv (tests/environments/test_openenv.py runs in
    its own environment): the error says how to install it, and why not beside retrain[mcp]."""
    import importlib.util

    if importlib.util.find_spec("openenv") is not None:
        pytest.skip("OpenEnv is installed here (the openenv test environment)")
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_data({"model_to_train": "retrain:tiny", "example_prompts": ["p"],
                                  "environment": {"type": "openenv",
                                                  "openenv": {"environment": "examples.openenv_grid:GridWalk"}}})
    message = str(info.value)
    assert "environment" in message and "pip install 'retrain[openenv]'" in message
    assert "cannot share a virtual environment with retrain[mcp]" in message and "mcp<2" in message
