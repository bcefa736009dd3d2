"""Prompt sources: inline, JSONL, JSON and parquet, with answer columns and clear errors."""

from __future__ import annotations

import json

import pytest

from retrain.core.config import DataConfig
from retrain.core.errors import ConfigError
from retrain.data import load_rows


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
