"""Rewards: the same completions get the same Scorer breakdown through TRL and through verl.

TRL side: TRL's own `GRPOTrainer._calculate_rewards` on the trainer retrain builds (its one reward
function is retrain's `ScorerRewardFunction`); the breakdowns are read back from the samples file
it writes. verl side: verl's own reward loop (`RewardLoopWorker.compute_score_batch`, the naive
reward manager) on the config composed with the run's reward overrides, so retrain's
`backends/verl/rewards.py` is verl's custom reward function; the breakdowns are read back from
`verl/breakdowns.jsonl`. Both get the same completion token ids and decode them themselves.

Documented difference: the semantic goal (MiniLM) encodes TRL's whole batch at once, padded to its
longest completion, and each verl completion alone; padding moves the similarity in the last float32
bits (about 1e-7). Everything else in a breakdown is identical.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from retrain.core.rollout import Message, Rollout
from retrain.core.run_dir import RunDir
from retrain.core.scoring import Scorer
from tests.parity.build import retrain_config, trl_trainer, verl_composed

ROWS = [
    {"prompt": "Write a short poem about my cat.", "pet": "Tom", "max_words": 8},
    {"prompt": "A poem for my kitten, please.", "pet": "Mia", "max_words": 5},
]
GROUP = 4
# GROUP completions per row, in TRL's batch order; True: the completion ends with the EOS token.
COMPLETIONS = [
    ("Tom the cat purrs by the fire.", False),
    ("A happy kitten naps in the sun all day long, Tom.", True),
    ("Snow falls on the quiet hill.", False),
    ("Meow!", True),
    ("Mia plays with yarn.", False),
    ("Mia the kitten purrs.", True),
    ("Whiskers twitch, paws up, my kitty dreams of fish tonight.", False),
    ("Bright morning light.", True),
]
BATCH = len(COMPLETIONS)
GOAL_ROUNDING = 1e-6  # float32 rounding of a cosine similarity in [-1, 1]


def config_data(folder: Path) -> dict:
    source = folder / "pets.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in ROWS), encoding="utf-8")
    return {
        "model": {"name": "retrain:tiny"},
        "data": {"source": str(source), "answer_column": "pet", "system_prompt": "You write short poems."},
        "verifiers": [{"rule": "mentions_a_cat"}],
        "rewards": {
            "goal": "Poem is happy, creative, and about a cat.",
            "functions": [
                {"function": "tests.parity.dataset_rewards:names_the_answer", "bounds": [0, 1]},
                {"function": "tests.parity.dataset_rewards:within_word_limit", "bounds": [0, 1]},
                {"function": "tests.parity.dataset_rewards:prompt_messages_seen", "bounds": [0, 10], "weight": 0},
                {"function": "tests.parity.dataset_rewards:completion_tokens_seen", "bounds": [0, 99], "weight": 0},
            ],
            "constraints": [{"type": "penalize_text_containing", "text_to_avoid": "s", "penalty_score": -1.0}],
        },
        "algorithm": {"group_size": GROUP, "prompts_per_step": len(ROWS), "max_completion_tokens": 16},
        # Seed 0 puts the rows' first step in file order (retrain.data.step_order), as the expectations read.
        "training": {"output_dir": str(folder / "runs"), "samples_per_step": BATCH, "seed": 0},
    }


def completion_ids(tokenizer) -> list[list[int]]:
    return [
        tokenizer(text, add_special_tokens=False)["input_ids"] + ([tokenizer.eos_token_id] if eos else [])
        for text, eos in COMPLETIONS
    ]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def score_on_trl(data: dict, folder: Path, ids: list[list[int]]) -> dict:
    trainer, run_dir = trl_trainer(data, folder)
    # TRL repeats each dataset row group-size times, in order; these are its dataset's own rows.
    inputs = [dict(trainer.train_dataset[i // GROUP]) for i in range(BATCH)]
    prompts = [row["prompt"] for row in inputs]
    # As TRL's `_generate` decodes conversational completions.
    contents = trainer.processing_class.batch_decode(ids, skip_special_tokens=True)
    completions = [[{"role": "assistant", "content": content}] for content in contents]
    rewards = trainer._calculate_rewards(inputs, prompts, completions, ids)
    samples = read_jsonl(run_dir.samples_dir / f"step_{trainer.state.global_step + 1:06d}.jsonl")
    return {"rewards": rewards, "samples": samples}


def score_on_verl(data: dict, folder: Path, ids: list[list[int]], pad_id: int) -> dict:
    import pyarrow.parquet as pq
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
    from verl.protocol import DataProto

    from retrain.backends.verl.data import write_parquet
    from retrain.backends.verl.launch import run_overrides
    from retrain.data import training_rows
    from retrain.models import resolve_model

    config = retrain_config(data, "verl")
    run_dir = RunDir.create(folder, "verl")
    run_dir.write_config(config.to_yaml_dict(), "")  # the reward function builds its Scorer from config.yaml
    ordered, longest = training_rows(config, tiny_tokenizer())  # what verl's launcher writes
    parquet = write_parquet(ordered, run_dir.path / "verl" / "train.parquet")
    rows = pq.read_table(parquet).to_pylist()  # the rows verl's dataset reads
    composed = verl_composed(data, run_overrides(config, run_dir, resolve_model(config.model.name), env={},
                                                 prompt_length=longest))

    width = max(len(sequence) for sequence in ids)
    responses = torch.full((BATCH, width), pad_id)
    response_mask = torch.zeros((BATCH, width), dtype=torch.long)
    for i, sequence in enumerate(ids):
        responses[i, : len(sequence)] = torch.tensor(sequence)
        response_mask[i, : len(sequence)] = 1
    prompt_width = 4  # the prompt tokens do not reach the reward; verl's batch carries them before the response
    batch = DataProto.from_dict(
        tensors={
            "prompts": torch.full((BATCH, prompt_width), pad_id),
            "responses": responses,
            "attention_mask": torch.cat([torch.ones((BATCH, prompt_width), dtype=torch.long), response_mask], dim=1),
        },
        non_tensors={
            key: np.array([rows[i // GROUP][key] for i in range(BATCH)], dtype=object)
            for key in ("data_source", "reward_model", "extra_info")
        },
    )
    worker = RewardLoopWorker(composed)
    try:
        outputs = worker.loop.run_until_complete(worker.compute_score_batch(batch))
    finally:
        worker.loop.run_until_complete(worker.loop.shutdown_default_executor())
        worker.loop.close()
        asyncio.set_event_loop(None)
    # verl scores the completions concurrently: the file is in finishing order, so match by text.
    written = {(r["prompt"], r["completion"]): r for r in read_jsonl(run_dir.path / "verl" / "breakdowns.jsonl")}
    assert len(written) == BATCH
    samples = [written[(rows[i // GROUP]["extra_info"]["prompt"], COMPLETIONS[i][0])] for i in range(BATCH)]
    return {"scores": [output["reward_score"] for output in outputs], "samples": samples}


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("rewards")
    data = config_data(folder)
    tokenizer = tiny_tokenizer()
    ids = completion_ids(tokenizer)  # the same token ids go to both backends
    trl = score_on_trl(data, folder, ids)
    verl = score_on_verl(data, folder, ids, tokenizer.pad_token_id)
    return {"data": data, "trl": trl, "verl": verl}


def tiny_tokenizer():
    from transformers import AutoTokenizer

    from retrain.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("retrain:tiny"))
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    return tokenizer


def breakdowns(side: dict) -> list[dict]:
    return [sample["breakdown"] for sample in side["samples"]]


def test_both_backends_score_the_same_decoded_completions_for_the_same_prompts(scored):
    for side in (scored["trl"], scored["verl"]):
        assert [s["completion"] for s in side["samples"]] == [text for text, _ in COMPLETIONS]
        assert [s["prompt"] for s in side["samples"]] == [ROWS[i // GROUP]["prompt"] for i in range(BATCH)]


def test_the_verifier_passes_and_fails_the_same_completions_on_both_backends(scored):
    expected = [True, True, False, True, False, True, True, False]
    for side in (scored["trl"], scored["verl"]):
        assert [b["verifiers"]["mentions_a_cat"]["passed"] for b in breakdowns(side)] == expected


def test_dataset_columns_reach_the_rewards_on_both_backends(scored):
    """`pet` (the answer column) and `max_words` (a plain column) come from the dataset rows."""
    for side in (scored["trl"], scored["verl"]):
        assert [b["rewards"]["names_the_answer"] for b in breakdowns(side)] == [1, 1, 0, 0, 1, 1, 0, 0]
        assert [b["rewards"]["within_word_limit"] for b in breakdowns(side)] == [1, 0, 1, 1, 1, 1, 0, 1]


def test_the_scorer_sees_every_prompt_message_and_the_completion_token_ids_on_both_backends(scored):
    """The same Rollout on both: the system prompt with the user turn, and the token ids the model generated."""
    ids = completion_ids(tiny_tokenizer())
    for side in (scored["trl"], scored["verl"]):
        assert [b["rewards"]["prompt_messages_seen"] for b in breakdowns(side)] == [2.0] * BATCH
        assert [b["rewards"]["completion_tokens_seen"] for b in breakdowns(side)] == [float(len(i)) for i in ids]


def test_every_breakdown_field_is_identical_on_both_backends_apart_from_the_semantic_goal(scored):
    """Verifier outcomes and reasons, reward and constraint values, gate floor and errors: exactly equal.
    Set aside: `rollout_id` (each backend's own label), the goal's value and the totals it enters
    (the test below)."""

    def comparable(breakdown: dict) -> dict:
        rest = {key: value for key, value in breakdown.items() if key != "rollout_id"}
        rest["rewards"] = {name: value for name, value in breakdown["rewards"].items() if name != "goal"}
        if breakdown["gate_floor"] is None:  # passed the gate: the total includes the goal
            del rest["total"]
        return rest

    trl, verl = breakdowns(scored["trl"]), breakdowns(scored["verl"])
    assert [comparable(b) for b in trl] == [comparable(b) for b in verl]
    assert [b["gate_floor"] for b in trl].count(-2.0) == 3  # the failed completions' totals were compared too


def test_the_semantic_goal_and_the_totals_it_enters_agree_to_float32_rounding(scored):
    trl, verl = breakdowns(scored["trl"]), breakdowns(scored["verl"])
    assert [b["rewards"]["goal"] for b in trl] == pytest.approx([b["rewards"]["goal"] for b in verl], abs=GOAL_ROUNDING)
    assert [b["total"] for b in trl] == pytest.approx([b["total"] for b in verl], abs=GOAL_ROUNDING)


def test_the_goal_differs_only_because_trl_encodes_the_whole_batch_at_once(scored):
    """DOCUMENTED DIFFERENCE. The Scorer reproduces each backend's goal exactly from the way it was
    called: TRL's eight completions scored together, verl's one at a time."""
    scorer = Scorer.from_config(retrain_config(scored["data"], "trl"))
    rollouts = [
        Rollout([Message("user", ROWS[i // GROUP]["prompt"])], [Message("assistant", text)],
                metadata={**ROWS[i // GROUP], "answer": ROWS[i // GROUP]["pet"]})
        for i, (text, _) in enumerate(COMPLETIONS)
    ]
    together = [b.rewards["goal"] for b in scorer.score_sync(rollouts)]
    alone = [scorer.score_sync([rollout])[0].rewards["goal"] for rollout in rollouts]
    assert together == [b["rewards"]["goal"] for b in breakdowns(scored["trl"])]
    assert alone == [b["rewards"]["goal"] for b in breakdowns(scored["verl"])]


def test_each_backend_trains_on_exactly_its_breakdown_totals(scored):
    """TRL keeps rewards as float32 (one column per reward function); verl's reward loop returns the total."""
    trl_totals = [b["total"] for b in breakdowns(scored["trl"])]
    assert torch.equal(scored["trl"]["rewards"], torch.tensor(trl_totals, dtype=torch.float32).unsqueeze(1))
    assert scored["verl"]["scores"] == [b["total"] for b in breakdowns(scored["verl"])]
