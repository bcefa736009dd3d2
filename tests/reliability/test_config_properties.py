"""Random mutations of valid configs: loading one either gives a config or a ConfigError (never another
exception), quickly (never a hang), and the CLI exits 0 or 2 without a traceback.

Mutations: a key deleted, a key renamed with a typo, a value replaced by one of another type (None,
negative and huge numbers, NaN and infinities, text, unicode, lists, mappings), an unknown key inserted,
a line duplicated, a tab injected, the text truncated, random bytes inserted. Model names stay offline:
validation only checks a name's form (a hub id is not looked up), and nothing here loads a model.
"""

from __future__ import annotations

import copy
import os
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrain.core.config import TrainingConfig
from retrain.core.errors import ConfigError
from tests.reliability.harness import REPO, run_cli_in_process

INLINE = textwrap.dedent("""\
    backend: verl
    model:
      name: retrain:tiny
      lora: {r: 8, alpha: 16}
    data:
      prompts: ["Add 2 and 3.", "What is 7 times 6?"]
      system_prompt: Answer with a number.
    verifiers:
      - rule: matches_regex
        params: {pattern: '\\d'}
    rewards:
      gate: penalty
      functions:
        - function: length_penalty
          weight: 0.5
          params: {max_words: 20}
      constraints:
        - type: penalize_text_containing
          text_to_avoid: "sorry"
          penalty_score: -1.0
    environment:
      tools: [calculator]
      max_turns: 2
    algorithm: {group_size: 4, prompts_per_step: 2, max_steps: 3, learning_rate: 1.0e-5}
    training: {save_every: 3, samples_per_step: 2}
    resources: {gpus_per_node: 0}
    """)
SEEDS = {
    "cat_poem": (REPO / "examples" / "cat_poem.yaml").read_text(encoding="utf-8"),
    "math": (REPO / "examples" / "math.yaml").read_text(encoding="utf-8"),
    "inline": INLINE,
}
SEED_DATA = {name: yaml.safe_load(text) for name, text in SEEDS.items()}

PROPERTY = settings(max_examples=300, deadline=timedelta(seconds=3), database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6), st.integers(min_value=10**18, max_value=10**40),
    st.integers(max_value=0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30), st.text(alphabet=st.characters(codec="utf-8"), max_size=10),
    st.sampled_from(["", " ", "retrain:tiny", "retrain:nope", "trl", "verl", "grpo", "hf:", "./nope", "~", "a:b",
                     "é😀", "-1", "1e400", ".inf", "null", "{", "[", "*x", "&x", "%", "!!int x"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                          max_size=3), max_leaves=6)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path and list index in the config data, e.g. ('algorithm', 'group_size')."""
    found = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        found.append((*prefix, key))
        found += _paths(value, (*prefix, key))
    return found


def _parent(data: Any, path: tuple) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


def _typo(word: str, data: st.DataObject) -> str:
    word = str(word) or "x"
    i = data.draw(st.integers(0, len(word) - 1))
    kind = data.draw(st.sampled_from(["drop", "double", "swap", "change", "case"]))
    if kind == "drop":
        return word[:i] + word[i + 1:]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    if kind == "swap" and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == "case":
        return word.upper()
    return word[:i] + data.draw(st.sampled_from("aeiou_-. 1")) + word[i + 1:]


@st.composite
def mutated_data(draw: Any) -> Any:
    """A seed's parsed data with one to three structural mutations."""
    data = copy.deepcopy(SEED_DATA[draw(st.sampled_from(sorted(SEED_DATA)))])
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(data, path), path[-1]
        mutation = draw(st.sampled_from(["delete", "rename", "replace", "insert"]))
        if mutation == "delete":
            del parent[key]
        elif mutation == "rename" and isinstance(parent, dict):
            parent[_typo(key, draw(st.data()))] = parent.pop(key)
        elif mutation == "insert" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = draw(values)
        else:
            parent[key] = draw(values)
    return data


@st.composite
def mutated_text(draw: Any) -> bytes:
    """A seed's YAML text with one to three textual mutations (bytes: the result may not be UTF-8)."""
    text = SEEDS[draw(st.sampled_from(sorted(SEEDS)))].encode("utf-8")
    for _ in range(draw(st.integers(1, 3))):
        lines = text.split(b"\n")
        i = draw(st.integers(0, len(lines) - 1))
        at = draw(st.integers(0, len(text)))
        mutation = draw(st.sampled_from(["duplicate", "tab", "truncate", "bytes", "delete", "indent", "dedent"]))
        if mutation == "duplicate":
            lines.insert(i, lines[i])
        elif mutation == "tab":
            lines[i] = b"\t" + lines[i] if draw(st.booleans()) else lines[i].replace(b" ", b"\t", 1)
        elif mutation == "indent":
            lines[i] = b"  " + lines[i]
        elif mutation == "dedent":
            lines[i] = lines[i].lstrip(b" ")
        elif mutation == "truncate":
            return text[:at]
        elif mutation == "bytes":
            text = text[:at] + draw(st.binary(min_size=1, max_size=8)) + text[at:]
            continue
        else:
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
            continue
        text = b"\n".join(lines)
    return text


def _load(text: str) -> None:
    """The property: a config, or a ConfigError that renders and names the source."""
    try:
        TrainingConfig.from_yaml_text(text, source="mutant.yaml")
    except ConfigError as error:
        rendered = error.render()
        assert error.issues and "mutant.yaml" in rendered


@pytest.fixture(scope="module", autouse=True)
def _from_the_repository_root():
    """Data paths in the examples (and 'module:function' paths) are relative to the repository root."""
    before = os.getcwd()
    os.chdir(REPO)
    for text in SEEDS.values():  # the seeds are valid; loading them once imports what validation needs
        TrainingConfig.from_yaml_text(text)
    yield
    os.chdir(before)


@PROPERTY
@given(mutated_data())
def test_structural_mutations_give_a_config_or_a_config_error(tally, data):
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    tally("config mutations (structure)").record("", "")
    _load(text)


@PROPERTY
@given(mutated_text())
def test_textual_mutations_give_a_config_or_a_config_error(tally, raw):
    tally("config mutations (text)").record("", "")
    _load(raw.decode("utf-8", errors="replace"))


@settings(PROPERTY, max_examples=150)
@given(st.one_of(mutated_text(), mutated_data().map(lambda data: yaml.safe_dump(data, allow_unicode=True).encode())))
def test_the_cli_exits_0_or_2_without_a_traceback(tally, tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("mutant", numbered=True) / "mutant.yaml"
    path.write_bytes(raw)
    code, output = run_cli_in_process("validate", str(path))
    tally("config mutations (CLI)").record(raw.decode("utf-8", errors="replace")[:60], output)
    assert "Traceback" not in output, output
    assert code in (0, 2), output
    assert (code == 0) == ("is valid for backend" in output), output


@pytest.mark.parametrize("text", [
    pytest.param("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)),
        id="alias-bomb"),
    pytest.param("model_to_train: &m [*m]\nexample_prompts: [a]\n", id="cyclic-alias"),
    pytest.param("a: " + "[" * 1000 + "]" * 1000 + "\n", id="deep-nesting"),
    pytest.param("model_to_train: ./" + "x" * 5000 + "\nexample_prompts: [a]\n", id="path-too-long"),
    pytest.param("model_to_train: retrain:tiny\nexample_prompts: [a]\nalgorithm: {? [a]: 1}\n", id="list-as-key"),
    pytest.param("model_to_train: retrain:tiny\nexample_prompts: [a]\nalgorithm:\n  group_size: !!int x\n",
                 id="bad-tag"),
    pytest.param("model_to_train: retrain:tiny\nexample_prompts: [a]\n'[': 1\n", id="bracket-in-a-key"),
])
def test_hostile_yaml_is_a_config_error_quickly(text):
    started = time.monotonic()
    with pytest.raises(ConfigError):
        TrainingConfig.from_yaml_text(text, source="mutant.yaml")
    assert time.monotonic() - started < 5


def test_seeds_are_valid():
    for name, text in SEEDS.items():
        assert TrainingConfig.from_yaml_text(text, source=name)
    assert Path(REPO / "examples" / "data" / "math_word_problems.jsonl").exists()
