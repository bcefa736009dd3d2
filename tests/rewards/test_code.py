"""The code reward: code extraction, test shapes, scoring in the sandbox, the verifier, the Scorer, the pool."""

from __future__ import annotations

import inspect
import textwrap
import time

import pytest
import yaml

from retrain.config_models import TrainingConfig
from retrain.core.registry import resolve_function
from retrain.core.rollout import Message, Rollout
from retrain.core.scoring import Scorer
from retrain.rewards.code import (
    IOCase,
    code_passes_tests,
    code_tests,
    extract_code,
    outputs_match,
    parse_tests,
    run_tests,
    run_tests_batch,
)
from retrain.rewards.sandbox import SandboxLimits

ADD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4", "assert add(0, 5) == 5"]
SUM_CASES = [{"input": "1 2\n", "output": "3\n"}, {"input": "10 -4", "output": "6"}, {"input": "0 0", "output": "0"}]


def fenced(code: str, tag: str = "python") -> str:
    return f"Here is my solution:\n\n```{tag}\n{textwrap.dedent(code).strip()}\n```\nIt adds numbers."


# -- extraction, shapes, comparison -----------------------------------------------------------------


def test_extract_code_takes_the_last_python_block_else_untagged_else_everything():
    assert extract_code("```python\nx = 1\n```\ntext\n```py\nx = 2\n```\n```bash\nls\n```") == "x = 2"
    assert extract_code("Try:\n```\nprint(3)\n```") == "print(3)"
    assert extract_code("```python\nprint(1)\n```\n```\nplain\n```") == "print(1)"
    assert extract_code("def f():\n    return 1") == "def f():\n    return 1"
    assert extract_code("```python\ndef f():\n    return 1") == "def f():\n    return 1"  # cut off mid-block
    assert extract_code("```bash\nrm -rf /\n```") == ""  # only other languages: no Python code
    assert extract_code("   ") == ""


def test_parse_tests_accepts_both_shapes_and_json():
    assert parse_tests(["assert f(1) == 1"]) == ["assert f(1) == 1"]
    assert parse_tests('["assert True"]') == ["assert True"]
    assert parse_tests([{"input": "1", "output": "2"}]) == [IOCase("1", "2")]
    assert parse_tests({"inputs": ["1", "2"], "outputs": ["a", "b"]}) == [IOCase("1", "a"), IOCase("2", "b")]
    assert parse_tests('{"inputs": ["1"], "outputs": ["a"]}') == [IOCase("1", "a")]


@pytest.mark.parametrize("value", [
    "assert f(1) == 1", 42, None, [], [1, 2], [{"input": "1"}], [{"input": 1, "output": "2"}],
    ["assert True", {"input": "1", "output": "2"}], {"inputs": ["1"], "outputs": []},
])
def test_malformed_tests_are_a_clear_error_naming_the_column(value):
    with pytest.raises(ValueError, match=r"dataset column 'unit_tests' must hold the tests as a list of assert"):
        parse_tests(value, "unit_tests")


def test_outputs_match_after_whitespace_normalisation():
    assert outputs_match("1 2\n3\n\n", "1  2\n3")
    assert outputs_match("\n  a b  \r\nc\n", "a b\nc")
    assert not outputs_match("1 2 3", "1 2\n3")
    assert not outputs_match("12", "1 2")


# -- running tests ------------------------------------------------------------------------------------


def test_run_tests_with_asserts_reports_each_test():
    report = run_tests("def add(a, b):\n    return a + b if a >= 0 else 99", ADD_TESTS)
    assert [o.passed for o in report.outcomes] == [True, False, True, True]
    assert report.fraction == 0.75 and not report.all_passed
    assert report.summary() == "3/4 tests passed; first failure: `assert add(-1, 1) == 0`: AssertionError"


def test_run_tests_with_stdin_cases():
    report = run_tests("a, b = map(int, input().split())\nprint(a + b if a else 'zero')", SUM_CASES)
    assert [o.passed for o in report.outcomes] == [True, True, False]
    assert "wrong output: expected '0', got 'zero'" in report.outcomes[2].detail


def test_a_crash_or_a_timeout_fails_only_its_own_case():
    code = "n = int(input())\nif n == 1:\n    raise ValueError('bad one')\nwhile n == 2:\n    pass\nprint(n)"
    cases = [{"input": str(n), "output": str(n)} for n in (0, 1, 2, 3)]
    report = run_tests(code, cases, SandboxLimits(timeout_seconds=1))
    assert [o.passed for o in report.outcomes] == [True, False, False, True]
    assert "ValueError: bad one" in report.outcomes[1].detail
    assert report.outcomes[2].detail == "timed out" and report.timed_out


def test_code_that_raises_fails_every_assert_and_says_why():
    report = run_tests("def add(a, b):\n    return a + b\nraise RuntimeError('boom')", ADD_TESTS[:2])
    assert report.passed == 0
    assert "RuntimeError: boom" in report.outcomes[0].detail


def test_output_in_the_report_is_truncated():
    report = run_tests("print('x' * 50000)\ndef add(a, b):\n    return 0", ADD_TESTS[:1], max_output_chars=100)
    assert report.stdout.startswith("x" * 100) and "more characters" in report.stdout and len(report.stdout) < 200


def test_demo_blocks_do_not_run_under_asserts():
    code = "def add(a, b):\n    return a + b\nif __name__ == '__main__':\n    print(add(int(input()), 1))"
    assert run_tests(code, ADD_TESTS).all_passed


# -- the reward and the verifier ----------------------------------------------------------------------


def test_code_tests_scores_the_fraction_of_tests_passed():
    completions = [
        fenced("def add(a, b):\n    return a + b"),
        fenced("def add(a, b):\n    return a + b if a >= 0 else 99"),
        "I cannot write code today.",
        fenced("def add(a, b) return a + b"),  # syntax error
        fenced("import sys\nsys.exit(0)\ndef add(a, b):\n    return a + b"),  # leaves before defining add
        fenced("import os\ndef add(a, b):\n    os._exit(0)"),  # leaves inside the first test
        "",
    ]
    scores = code_tests(completions, [{"tests": ADD_TESTS}] * len(completions))
    assert scores == [1.0, 0.75, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_code_tests_with_stdin_cases_and_another_column():
    completions = [fenced("a, b = map(int, input().split())\nprint(a + b)"), fenced("print(3)")]
    scores = code_tests(completions, [{"io": SUM_CASES}] * 2, tests_column="io")
    assert scores == [1.0, pytest.approx(1 / 3)]


def test_code_tests_needs_the_column_and_its_shape():
    with pytest.raises(ValueError, match=r"column 'tests' \(params.tests_column\); completion 0 has columns \['x'\]"):
        code_tests(["print(1)"], [{"x": 1}])
    with pytest.raises(ValueError, match="dataset column 'tests' must hold"):
        code_tests(["print(1)"], [{"tests": "assert True"}])


def test_code_passes_tests_gives_the_count_and_the_first_failure():
    completions = [fenced("def add(a, b):\n    return a + b"), fenced("def add(a, b):\n    return a * b")]
    (ok, reason), (bad, why) = code_passes_tests(completions, [{"tests": ADD_TESTS}] * 2)
    assert ok and reason == "4/4 tests passed"
    assert not bad and why == "1/4 tests passed; first failure: `assert add(1, 2) == 3`: AssertionError"


def test_registered_with_bounds_and_batched():
    function = resolve_function("code_tests", "reward")
    assert function.batched and function.bounds == (0.0, 1.0)
    assert resolve_function("code_passes_tests", "verifier").batched


@pytest.mark.parametrize(("name", "kind", "section"), [("code_tests", "reward", "rewards"),
                                                       ("code_passes_tests", "verifier", "verifiers")])
def test_docstring_has_a_summary_and_a_valid_example(name, kind, section):
    doc = inspect.getdoc(resolve_function(name, kind).fn)
    summary = doc.split("\n\n")[0]
    assert "\n" not in summary and summary.endswith(".")
    example = doc.split("\n\n")[-1]  # the last paragraph: the docs generator reads all after `Example:` as YAML
    assert example.startswith("Example:\n")
    snippet = yaml.safe_load(textwrap.dedent(example.split("\n", 1)[1]))
    assert list(snippet) == [section]
    config = TrainingConfig.from_data({"model_to_train": "retrain:tiny", "example_prompts": ["p"], **snippet})
    assert Scorer.from_config(config).components[0].function.name == name


# -- through the Scorer ---------------------------------------------------------------------------


def rollout(completion: str, **metadata) -> Rollout:
    return Rollout([Message("user", "Write add(a, b).")], [Message("assistant", completion)], metadata=metadata)


def test_through_the_scorer_from_a_yaml_config():
    config = TrainingConfig.from_yaml_text(textwrap.dedent("""\
        model_to_train: retrain:tiny
        example_prompts: ["Write add(a, b)."]
        verifiers:
          - rule: code_passes_tests
            penalty: -1
            params: {timeout_seconds: 2}
        rewards:
          functions:
            - function: code_tests
              params: {tests_column: tests, timeout_seconds: 2, memory_mb: 256, max_workers: 2}
        """))
    scorer = Scorer.from_config(config)
    right, half, sneaky = scorer.score_sync([
        rollout(fenced("def add(a, b):\n    return a + b"), tests=ADD_TESTS),
        rollout(fenced("def add(a, b):\n    return a + b if a > 1 else 0"), tests=ADD_TESTS),
        rollout(fenced("print('4/4 tests passed')\nimport os\nos._exit(0)"), tests=ADD_TESTS),
    ])
    assert right.rewards["code_tests"] == 1.0 and right.gate_passed and right.total == 1.0
    assert half.rewards["code_tests"] == 0.5 and not half.gate_passed
    assert "2/4 tests passed" in half.verifiers["code_passes_tests"].reason
    assert sneaky.rewards["code_tests"] == 0.0 and not sneaky.gate_passed
    assert half.total < right.total and sneaky.total <= half.total


# -- the pool -----------------------------------------------------------------------------------------


def test_runs_go_in_parallel_in_a_bounded_pool():
    codes = ["import time\ntime.sleep(0.6)\ndef f():\n    return 1"] * 4
    rows = [["assert f() == 1"]] * 4
    started = time.monotonic()
    reports = run_tests_batch(codes, rows, max_workers=2)
    elapsed = time.monotonic() - started
    assert all(r.all_passed for r in reports)
    assert 1.2 <= elapsed < 2.3  # two at a time: two waves of 0.6 s, not four (2.4 s) and not one (0.6 s)


# -- machines without OS isolation ------------------------------------------------------------------------

CODE_CONFIG = """\
model_to_train: retrain:tiny
example_prompts: ["Write add(a, b)."]
rewards:
  functions:
    - function: code_tests
      params: {PARAMS}
"""


def test_validate_and_the_run_start_say_which_sandbox_layers_are_active(tmp_path):
    from typer.testing import CliRunner

    from retrain.cli import app
    from retrain.rewards.sandbox import sandbox_layers

    path = tmp_path / "code.yaml"
    path.write_text(CODE_CONFIG.replace("{PARAMS}", "{timeout_seconds: 2}"))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "code sandbox layers: " + ", ".join(sandbox_layers()) in " ".join(result.output.split())
    config = TrainingConfig.from_yaml(path)
    assert config.preflight_notes() == ["code sandbox layers: " + ", ".join(sandbox_layers())]


def test_without_os_isolation_the_code_rules_are_refused_unless_allowed(monkeypatch, tmp_path):
    # Stand-in for a machine without root (this one has it): the measured layers of the default sandbox
    # are replaced by what such a machine reports. The refusal itself, with real layers switched off, is
    # test_sandbox_attacks.py::test_in_process_only_is_refused_unless_allowed.
    from retrain.core.errors import ConfigError
    from retrain.rewards import sandbox

    monkeypatch.setitem(sandbox._layers_cache, (True, True, True), ("process", "no_new_privs", "audit hook"))
    path = tmp_path / "code.yaml"
    path.write_text(CODE_CONFIG.replace("{PARAMS}", "{timeout_seconds: 2}"))
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_yaml(path)
    message = str(info.value)
    assert "rewards.functions[0].params" in message and "allow_in_process_sandbox_only: true" in message
    assert "code.yaml:6" in message
    path.write_text(CODE_CONFIG.replace("{PARAMS}", "{allow_in_process_sandbox_only: true}"))
    assert TrainingConfig.from_yaml(path).preflight_notes() == [
        "code sandbox layers: process, no_new_privs, audit hook"]
    path.write_text(CODE_CONFIG.replace("{PARAMS}", "{allow_in_process_sandbox_only: 'yes'}"))
    with pytest.raises(ConfigError, match="must be true or false"):
        TrainingConfig.from_yaml(path)
