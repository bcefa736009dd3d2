"""Prompt sources: inline, JSONL, JSON and parquet, with answer columns and clear errors."""

from __future__ import annotations

import json

import pytest

from retrain.core.config import DataConfig
from retrain.core.errors import ConfigError
from retrain.data import limit_prompt_length, load_rows, prompt_token_counts, step_order


def test_inline_prompts_become_chat_messages_with_the_system_prompt():
    rows = load_rows(DataConfig(prompts=["hi"], system_prompt="Be brief."))
    assert rows == [{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}]


def test_jsonl_rows_keep_every_column_and_name_the_answer(tmp_path):
    path = tmp_path / "math.jsonl"
    path.write_text('{"question": "1+1?", "solution": "2", "level": 1}\n\n'
                    '{"question": "2+2?", "solution": "4", "level": 2}\n')
    rows = load_rows(DataConfig(source=str(path), prompt_column="question", answer_column="solution"))
    assert rows[1] == {"prompt": [{"role": "user", "content": "2+2?"}], "solution": "4", "level": 2, "answer": "4"}


def test_parquet_source(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": ["a", "b"], "answer": ["x", "y"]}), path)
    rows = load_rows(DataConfig(source=str(path), answer_column="answer"))
    assert [r["answer"] for r in rows] == ["x", "y"]


def test_a_dataset_missing_its_answer_column_is_named(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"prompt": "a"}]))
    with pytest.raises(ConfigError) as info:
        load_rows(DataConfig(source=str(path), answer_column="answer"))
    assert info.value.issues[0].field == "data.answer_column"
    assert "no column 'answer'" in info.value.issues[0].message


def test_a_bad_jsonl_line_is_named_by_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a"}\n{"prompt": \n')
    with pytest.raises(ConfigError) as info:
        load_rows(DataConfig(source=str(path)))
    assert f"{path}:2" in info.value.issues[0].message


def test_a_missing_source_file_is_named(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_rows(DataConfig(source=str(tmp_path / "nope.jsonl")))
    assert "does not exist" in info.value.issues[0].message


def test_hf_source_loads_a_dataset_folder_through_datasets(tmp_path):
    """`hf:NAME` goes through datasets.load_dataset, which takes hub ids and local dataset folders alike."""
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"prompt": "a", "answer": "1"}\n{"prompt": "b", "answer": "2"}\n')
    rows = load_rows(DataConfig(source=f"hf:{folder}", answer_column="answer"))
    assert [r["answer"] for r in rows] == ["1", "2"]


def test_several_sources_train_together_and_a_missing_one_is_named_by_its_index(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text('{"prompt": "one"}\n')
    second.write_text('{"prompt": "two"}\n{"prompt": "three"}\n')
    rows = load_rows(DataConfig(source=[str(first), str(second)]))
    assert [row["prompt"][0]["content"] for row in rows] == ["one", "two", "three"]
    with pytest.raises(ConfigError) as info:
        load_rows(DataConfig(source=[str(first), str(tmp_path / "missing.jsonl")]))
    assert info.value.issues[0].field == "data.source[1]"


def test_a_dotted_answer_column_reads_inside_a_mapping_as_in_verls_datasets(tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    path.write_text(json.dumps({"prompt": [{"role": "user", "content": "1+1?"}],
                                "reward_model": {"style": "rule", "ground_truth": "2"}}) + "\n")
    (row,) = load_rows(DataConfig(source=str(path), answer_column="reward_model.ground_truth"))
    assert row["answer"] == "2"


def test_a_system_prompt_on_rows_with_their_own_system_message_is_an_error_not_two_system_messages(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"prompt": [{"role": "system", "content": "Mine."},
                                           {"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(ConfigError) as info:
        load_rows(DataConfig(source=str(path), system_prompt="Theirs."))
    assert info.value.issues[0].field == "data.system_prompt" and "row 0" in info.value.issues[0].message


def test_the_step_order_is_seeded_epochs_of_every_row_cut_to_the_steps():
    rows = [{"i": i} for i in range(5)]
    order = step_order(rows, seed=3, prompts_per_step=2, steps=6)
    assert len(order) == 12
    assert sorted(r["i"] for r in order[:5]) == [0, 1, 2, 3, 4]  # the first epoch: each row once
    assert sorted(r["i"] for r in order[5:10]) == [0, 1, 2, 3, 4]
    assert order == step_order(rows, seed=3, prompts_per_step=2, steps=6)
    assert order != step_order(rows, seed=4, prompts_per_step=2, steps=6)


def tiny_tokenizer():
    from transformers import AutoTokenizer

    from retrain.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("retrain:tiny"))


def test_prompts_past_max_prompt_tokens_stop_the_run_naming_the_row_or_are_left_out():
    tokenizer = tiny_tokenizer()
    prompts = ["short", "a much longer prompt " * 20]
    rows = load_rows(DataConfig(prompts=prompts))
    short, long = prompt_token_counts(rows, tokenizer, {})
    with pytest.raises(ConfigError) as info:
        limit_prompt_length(rows, DataConfig(prompts=prompts, max_prompt_tokens=short), tokenizer)
    assert info.value.issues[0].field == "data.max_prompt_tokens" and "row 1" in info.value.issues[0].message
    kept, longest, left_out = limit_prompt_length(
        rows, DataConfig(prompts=prompts, max_prompt_tokens=short, overlong_prompts="filter"), tokenizer)
    assert (kept, longest, left_out) == (rows[:1], short, 1)
    assert limit_prompt_length(rows, DataConfig(prompts=prompts), tokenizer) == (rows, long, 0)  # unset: the longest
