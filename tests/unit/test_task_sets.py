"""reasoning-gym task sets (the real library): generated rows, the held-out set that never overlaps training,
the `reasoning_gym` reward, and errors that name the field."""

from __future__ import annotations

import json

import pytest

from retrain.core.config import TrainingConfig
from retrain.core.errors import ConfigError
from retrain.core.rollout import Message, Rollout
from retrain.core.scoring import Scorer
from retrain.data import load_rows
from retrain.evaluation import correctness, held_out_rows

ARITHMETIC = {"name": "basic_arithmetic", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}}


def config(data: dict, evaluation: dict | None = None) -> TrainingConfig:
    return TrainingConfig.from_data({
        "model": "retrain:tiny", "data": data,
        "rewards": {"functions": [{"function": "reasoning_gym", "params": {"extract": "last_number"}}]},
        **({"evaluation": evaluation} if evaluation else {}),
    })


def test_rows_carry_the_question_the_answer_and_the_whole_entry():
    cfg = config({"reasoning_gym": {"tasks": [ARITHMETIC, "chain_sum"], "size": 20, "seed": 3},
                  "system_prompt": "Answer with a number."})
    rows = load_rows(cfg.data)
    assert len(rows) == 20 and {row["task"] for row in rows} == {"basic_arithmetic", "chain_sum"}
    row = rows[0]
    entry = json.loads(row["reasoning_gym_entry"])
    assert row["prompt"] == [{"role": "system", "content": "Answer with a number."},
                             {"role": "user", "content": entry["question"]}]
    assert row["answer"] == str(entry["answer"])
    assert load_rows(cfg.data) == rows  # seeded


def test_the_reward_is_the_tasks_own_score_of_the_extracted_answer():
    cfg = config({"reasoning_gym": {"tasks": [ARITHMETIC], "size": 4, "seed": 3}},
                 {"reasoning_gym": {"size": 4, "seed": 100}})
    rows = load_rows(cfg.data)
    scorer = Scorer.from_config(cfg)

    def rollout(row: dict, text: str) -> Rollout:
        return Rollout([Message("user", row["prompt"][-1]["content"])], [Message("assistant", text)],
                       metadata={k: v for k, v in row.items() if k != "prompt"})

    right = [rollout(row, f"The result is {row['answer']}") for row in rows]
    wrong = [rollout(row, f"It is {int(float(row['answer'])) + 1}, I think") for row in rows]
    assert [b.rewards["reasoning_gym"] for b in scorer.score_sync(right)] == [1.0] * 4
    assert [b.rewards["reasoning_gym"] for b in scorer.score_sync(wrong)] == [0.0] * 4
    rule, text = correctness(cfg, scorer)  # a task's own checker decides correctness by default
    assert rule is not None and text == "correct when reasoning_gym >= 1"


def test_the_held_out_set_shares_no_question_with_training():
    cfg = config({"reasoning_gym": {"tasks": [ARITHMETIC], "size": 200, "seed": 1}},
                 {"reasoning_gym": {"size": 100, "seed": 5000}})
    training = {row["prompt"][-1]["content"] for row in load_rows(cfg.data)}
    rows, left_out = held_out_rows(cfg)
    assert rows and not {row["prompt"][-1]["content"] for row in rows} & training
    # one-digit sums repeat: some generated held-out questions were asked in training, and were left out
    assert left_out > 0 and len(rows) + left_out == 100


def test_held_out_seeds_that_repeat_training_rows_are_refused():
    # reasoning-gym makes row i of seed s from Random(s + i): seeds 1..50 are the training rows
    with pytest.raises(ConfigError) as info:
        config({"reasoning_gym": {"tasks": ["chain_sum"], "size": 50, "seed": 1}},
               {"reasoning_gym": {"size": 30, "seed": 7}})
    (issue,) = info.value.issues
    assert issue.field == "evaluation.reasoning_gym.seed" and "at least 51" in issue.message


@pytest.mark.parametrize(("task", "field", "words"), [
    ({"name": "basic_arithmetc"}, "data.reasoning_gym.tasks[0].name", "did you mean basic_arithmetic"),
    ({"name": "basic_arithmetic", "config": {"bogus": 3}}, "data.reasoning_gym.tasks", "bogus"),
])
def test_a_bad_task_names_the_field(task, field, words):
    cfg = config({"reasoning_gym": {"tasks": [task], "size": 4}})
    with pytest.raises(ConfigError) as info:
        load_rows(cfg.data)
    (issue,) = info.value.issues
    assert issue.field == field and words in issue.message


def test_the_cli_validates_a_reasoning_gym_config_with_its_held_out_set(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({
        "model": "retrain:tiny", "data": {"reasoning_gym": {"tasks": [{"name": "basic_arithmetc"}], "size": 4}},
        "rewards": {"functions": [{"function": "reasoning_gym"}]},
    }))
    done = subprocess.run([sys.executable, "-m", "retrain.cli", "validate", str(path)], capture_output=True, text=True)
    assert done.returncode == 2 and "data.reasoning_gym.tasks[0].name" in done.stderr and "Traceback" not in done.stderr
