"""Environments on TRL: episodes run through TRL's `rollout_func`, and TRL's own loss mask
(completion_mask x tool_mask, from our `env_mask`) covers exactly the model's tokens."""

from __future__ import annotations

import json
from pathlib import Path

from retrain.backends.trl.launch import build_trainer
from retrain.config_models import TrainingConfig
from retrain.core.progress import ProgressReporter
from retrain.core.run import run_sync
from retrain.core.run_dir import RunDir
from tests.tiny_runs import QUIET, metrics

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "calculator_tools.yaml"
CALL = '<tool_call>{"name": "calculator", "arguments": {"expression": "%s"}}</tool_call>'


def scripted_policy(trainer):
    """Stands in for a model that has learned to use the calculator (the tiny random test model
    cannot): it calls the tool on the question, then answers with the tool's result."""
    tokenizer = trainer.processing_class
    eos = tokenizer.eos_token_id

    def generate_batch(sequences, budgets):
        outputs = []
        for sequence in sequences:
            text = tokenizer.decode(sequence)
            if "<|im_start|>tool" in text:
                said = "The answer is " + text.rsplit("<|im_start|>tool\n", 1)[1].split("<|im_end|>")[0]
            else:
                said = CALL % text.rsplit("What is ", 1)[1].split("?")[0]
            outputs.append(tokenizer(said, add_special_tokens=False)["input_ids"] + [eos])
        return outputs

    return generate_batch


def test_trls_loss_mask_is_exactly_the_models_tokens(tmp_path):
    config = TrainingConfig.from_yaml(EXAMPLE)
    config = config.model_copy(update={
        "model": config.model.model_copy(update={"name": "retrain:tiny"}),
        "data": config.data.model_copy(update={"source": str(ROOT / "examples" / "data" / "arithmetic.jsonl")}),
        "algorithm": config.algorithm.model_copy(update={"max_steps": 1}),
    })
    run_dir = RunDir.create(tmp_path, "mask")
    trainer = build_trainer(config, run_dir, ProgressReporter(QUIET, enabled=False), generate_batch=scripted_policy)
    seen = []
    compute_loss = trainer._compute_loss

    def spy(model, inputs):  # records what TRL's own loss receives, then computes it unchanged
        seen.append({key: inputs[key].tolist() for key in ("completion_ids", "completion_mask", "tool_mask")})
        return compute_loss(model, inputs)

    trainer._compute_loss = spy
    try:
        trainer.train()
    finally:
        trainer.retrain_episodes.close()
    rollouts = trainer.retrain_episodes.last_rollouts
    assert seen and len(rollouts) == len(seen[0]["completion_ids"]) == 8
    # TRL shuffles the batch before the loss; rows are matched by their tokens (padding dropped).
    trained = []
    for ids, completion_mask, tool_mask in zip(*(seen[0][k] for k in ("completion_ids", "completion_mask",
                                                                      "tool_mask")), strict=True):
        n = sum(completion_mask)
        loss_mask = [c * t for c, t in zip(completion_mask, tool_mask, strict=True)]
        assert not any(loss_mask[n:])
        trained.append((tuple(ids[:n]), tuple(loss_mask[:n])))
    episodes = [(tuple(r.completion_token_ids), tuple(r.trainable_mask)) for r in rollouts]
    assert sorted(trained) == sorted(episodes)
    for rollout in rollouts:
        assert 0 < sum(rollout.trainable_mask) < len(rollout.completion_token_ids)  # model and tool tokens
        assert rollout.episode.turns == 2 and rollout.episode.tool_calls == 1
    # The verifier read the model's final answer, which came from the tool: every episode passes.
    record = metrics(run_dir.path)[0]
    assert record["verifiers/correct_answer/pass_rate"] == 1.0
    assert record["env/tool_calls/mean"] == 1.0 and record["env/tools/calculator/calls"] == 8.0
    assert record["rewards/used_the_calculator/mean"] == 1.0


def test_a_hostile_calculator_expression_is_an_error_and_training_goes_on(tmp_path):
    # 26 characters that used to hold the trainer's interpreter lock for 16 s of big-integer work, past any
    # tool timeout; now refused before computing. Every episode of the step sends it.
    hostile = "(((9**100)**100)**100)**10"

    def hostile_policy(trainer):
        tokenizer = trainer.processing_class

        def generate_batch(sequences, budgets):
            return [tokenizer((CALL % hostile) if "<|im_start|>tool" not in tokenizer.decode(sequence)
                              else "I could not compute it.", add_special_tokens=False)["input_ids"]
                    + [tokenizer.eos_token_id] for sequence in sequences]

        return generate_batch

    config = TrainingConfig.from_yaml(EXAMPLE)
    config = config.model_copy(update={
        "model": config.model.model_copy(update={"name": "retrain:tiny"}),
        "data": config.data.model_copy(update={"source": str(ROOT / "examples" / "data" / "arithmetic.jsonl")}),
        "algorithm": config.algorithm.model_copy(update={"max_steps": 1}),
        "environment": config.environment.model_copy(update={"tool_timeout_seconds": 2.0}),
    })
    run_dir = RunDir.create(tmp_path, "hostile")
    trainer = build_trainer(config, run_dir, ProgressReporter(QUIET, enabled=False), generate_batch=hostile_policy)
    try:
        trainer.train()
    finally:
        trainer.retrain_episodes.close()
    record = metrics(run_dir.path)[0]
    assert record["step"] == 1 and record["env/tool_error_rate"] == 1.0
    for rollout in trainer.retrain_episodes.last_rollouts:
        (reply,) = [m["content"] for m in rollout.messages if m["role"] == "tool"]
        assert "result too large" in reply


def test_the_calculator_example_trains_on_trl_with_the_tiny_model(tmp_path):
    summary = run_sync(str(EXAMPLE), model="retrain:tiny", max_steps=2, output_dir=tmp_path, console=QUIET)
    assert summary["status"] == "completed" and "env/tool_calls/mean" in summary["metrics"]
    run_dir = Path(summary["run_dir"])
    records = metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2]
    assert all({"env/turns/mean", "env/tool_calls/mean", "env/tool_error_rate"} <= set(r) for r in records)
    sample = json.loads((run_dir / "samples" / "step_000001.jsonl").read_text().splitlines()[0])
    assert sample["messages"][0]["role"] == "assistant"


def test_the_mcp_example_trains_on_trl_and_stops_its_server(tmp_path, monkeypatch):
    import psutil

    monkeypatch.chdir(ROOT)  # the example's paths are relative to the repository root
    summary = run_sync("examples/mcp_tools.yaml", model="retrain:tiny", max_steps=2, output_dir=tmp_path,
                       console=QUIET)
    assert summary["status"] == "completed"
    records = metrics(Path(summary["run_dir"]))
    assert [r["step"] for r in records] == [1, 2] and all("env/turns/mean" in r for r in records)
    servers = [c for c in psutil.Process().children(recursive=True) if "mcp_server.py" in " ".join(c.cmdline())]
    assert not servers, "the run left its MCP server running"
