"""The bad-config corpus: each file in bad_configs/ is one mistake a user makes. Each must give one clear
message naming the field, the file and line, and the fix, and exit 2 without a traceback.

A case's first comment lines say what to expect:

    # expect: <text the message must contain>
    # field: <the dotted field the message names, or ->
    # command: run <extra arguments>      (optional; default `validate`; {tmp} is a fresh folder)
    # line: <the line the message points at>  (optional)

`validate` cases run in-process through the CLI's entry point (fast); `run` cases, and one case of every
kind, run as real subprocesses. The terminal summary prints the count of cases and of tracebacks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reliability.harness import REPO, run_cli, run_cli_in_process

CORPUS = Path(__file__).parent / "bad_configs"


@dataclass(frozen=True)
class Case:
    path: Path
    expect: str
    field: str | None
    line: int | None
    command: list[str]

    @property
    def source(self) -> str:
        return str(self.path.relative_to(REPO))

    def argv(self, tmp: Path) -> list[str]:
        command, *extra = self.command
        return [command, self.source, *(arg.replace("{tmp}", str(tmp)) for arg in extra)]


def read_case(path: Path) -> Case:
    header: dict[str, str] = {}
    for text_line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if not text_line.startswith("# "):
            break
        key, separator, value = text_line[2:].partition(": ")
        if separator and key in ("expect", "field", "line", "command"):
            header.setdefault(key, value.strip())
    assert "expect" in header and "field" in header, f"{path.name}: needs '# expect:' and '# field:' comments"
    field = header["field"]
    return Case(path, header["expect"], None if field == "-" else field,
                int(header["line"]) if "line" in header else None, header.get("command", "validate").split())


CASES = [read_case(path) for path in sorted(CORPUS.glob("*.yaml"))]
# A case of every kind (the name's first word) also runs as a real `python -m retrain.cli` process.
SAMPLE = [case for case in CASES if case.path.stem in {
    "type_group_size_text", "unknown_nested_near_miss", "missing_model", "conflict_alias_and_field",
    "yaml_tab_indentation",
    "yaml_not_utf8", "name_unknown_verifier", "import_raises_on_import", "batch_trl_not_divisible_across_gpus",
    "range_nan_learning_rate", "verl_cpu_kl_without_lora", "trl_multi_node", "options_not_a_mapping",
    "model_path_missing", "prompts_empty", "data_invalid_json", "rollout_server_url_not_a_url",
}]


def check(case: Case, code: int, output: str) -> None:
    assert "Traceback" not in output, output
    assert code == 2, f"exit code {code}:\n{output}"
    assert output.count("error:") == 1, output
    location = case.source + (f":{case.line}" if case.line else "") + (f", {case.field}" if case.field else "")
    problem_lines = [line for line in output.splitlines() if case.expect in line]
    assert problem_lines, f"expected {case.expect!r} in:\n{output}"
    assert any(f"{location}: " in line for line in problem_lines), f"expected '{location}: ' in:\n{output}"


def test_the_corpus_covers_every_kind_of_mistake():
    kinds = {case.path.stem.split("_")[0] for case in CASES}
    assert len(CASES) >= 45 and len(SAMPLE) == 17
    assert kinds == {case.path.stem.split("_")[0] for case in SAMPLE if case.command[0] == "validate"}
    assert kinds >= {"type", "unknown", "missing", "yaml", "name", "import", "batch", "range", "verl", "trl", "model",
                     "prompts", "data", "rollout"}
    assert {case.command[0] for case in CASES} == {"validate", "run"}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.path.stem)
def test_a_bad_config_gives_one_clear_message(case: Case, tmp_path, monkeypatch, tally):
    if case.command[0] == "validate":
        monkeypatch.chdir(REPO)
        code, output = run_cli_in_process(*case.argv(tmp_path))
    else:
        code, output = run_cli(*case.argv(tmp_path))
    tally("bad-config corpus").record(case.path.stem, output)
    check(case, code, output)
    if case.command[0] == "run":  # the error comes before any training
        assert not list(tmp_path.rglob("checkpoint-*")), output
        for summary in tmp_path.rglob("summary.json"):
            assert json.loads(summary.read_text())["steps"] == 0


@pytest.mark.parametrize("case", SAMPLE, ids=lambda case: case.path.stem)
def test_as_a_real_process(case: Case, tmp_path, tally):
    code, output = run_cli(*case.argv(tmp_path))
    tally("bad-config corpus, as subprocesses").record(case.path.stem, output)
    check(case, code, output)
