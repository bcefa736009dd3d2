"""Held-out evaluation: one evaluator, the same numbers whatever backend trained the model.

retrain evaluates with its own code, not inside TRL's eval loop or verl's validation: the held-out
prompts (the config's `evaluation` section) are rendered with the same chat template as training,
completed by batched `generate()` with the evaluation's own sampling settings and seed, and scored by
the same Scorer as training. A model trained by any backend is read from what the run leaves (its
final model folder, or a checkpoint), so the metric definitions cannot differ between backends.

Metrics (`eval/...`): `eval/reward/mean`, each component (`eval/rewards/<name>/mean`,
`eval/verifiers/<name>/pass_rate`, `eval/constraints/<name>/mean`), `eval/completion_length/mean`, and
`eval/pass@k` for each k of `pass_at`: per prompt 1 - C(n-c, k) / C(n, k) with c correct completions of
n (the unbiased estimator of Chen et al. 2021), averaged over prompts. Which completions are correct
is `evaluation.correct` (default: every verifier passes and every reward that reads the reference
answer reaches the top of its range).

In a run directory, each evaluation appends one record to `eval.jsonl` (step 0: the baseline before
training) and keeps its completions with their breakdowns in `eval_samples/step_<N>.jsonl`.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.core.config import DataConfig, EvaluationConfig, TrainingConfig
from retrain.core.errors import ConfigError, ConfigIssue, RetrainError
from retrain.core.metrics import JsonlWriter, read_jsonl
from retrain.core.rollout import Message, RewardBreakdown, Rollout
from retrain.core.run_dir import RunDir
from retrain.core.scoring import Scorer

if TYPE_CHECKING:
    from rich.console import Console

EVAL_FILE = "eval.jsonl"
# A reward that takes one of these compares the completion with a reference: it decides correctness by default.
ANSWER_ARGUMENTS = ("answer", "reasoning_gym_entry")
EVAL_SAMPLES = "eval_samples"


class EvaluationError(RetrainError):
    """A model that cannot be evaluated (nothing to load at the path given, a partial checkpoint)."""


# -- pass@k -------------------------------------------------------------------------------------


def pass_at_k(n: int, correct: int, k: int) -> float:
    """The probability that at least one of k completions drawn without replacement from n (of which
    `correct` are correct) is correct: 1 - C(n-c, k) / C(n, k), computed as a stable product."""
    if not 0 <= correct <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={correct}, k={k})")
    if n - correct < k:
        return 1.0
    miss = 1.0
    for i in range(n - correct + 1, n + 1):  # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
        miss *= 1.0 - k / i
    return 1.0 - miss


# -- what counts as correct ----------------------------------------------------------------------


def correctness(config: TrainingConfig, scorer: Scorer) -> tuple[Callable[[RewardBreakdown], bool] | None, str]:
    """The rule for pass@k and a sentence saying it; None when the config gives nothing to judge by (no
    verifier, no reward that reads the answer, no `evaluation.correct`)."""
    assert config.evaluation is not None
    correct = config.evaluation.correct
    verifiers = scorer.names("verifier")
    if correct.verifiers == "all":
        required = verifiers
    elif correct.verifiers == "none":
        required = []
    else:
        required = list(correct.verifiers)
    thresholds: dict[str, float] = {}
    if correct.rewards is not None:
        thresholds = dict(correct.rewards)
    else:
        for component in scorer.components:
            if component.role == "reward" and set(ANSWER_ARGUMENTS) & set(component.function.parameters):
                if component.bounds is None:
                    raise ConfigError([ConfigIssue(
                        "evaluation.correct.rewards", None,
                        f"'{component.name}' reads the reference answer but has no known range, so its maximum "
                        f"is unknown; give the threshold: correct: {{rewards: {{{component.name}: 1.0}}}}",
                    )])
                thresholds[component.name] = component.bounds[1]
    minimum = correct.min_total
    if not required and not thresholds and minimum is None:
        return None, ("no pass@k: nothing says what a correct completion is (no verifier, no reward that reads the "
                      "answer); set evaluation.correct")
    roles = {c.name: c.role for c in scorer.components}
    parts = [f"verifier {name} passes" for name in required]
    parts += [f"{name} >= {value:g}" for name, value in thresholds.items()]
    if minimum is not None:
        parts.append(f"total >= {minimum:g}")

    def is_correct(breakdown: RewardBreakdown) -> bool:
        if any(not breakdown.verifiers[name].passed for name in required):
            return False
        for name, value in thresholds.items():
            got = (breakdown.constraints.get(name) if roles[name] == "constraint" else breakdown.rewards.get(name))
            if got is None or got < value:
                return False
        return minimum is None or breakdown.total >= minimum

    return is_correct, "correct when " + " and ".join(parts)


# -- the held-out rows ---------------------------------------------------------------------------


def _eval_field(name: str | None) -> str | None:
    if name is not None and name.startswith(("data.source", "data.prompts", "data.split")):
        return "evaluation." + name.removeprefix("data.")
    return name


def eval_rows(config: TrainingConfig) -> list[dict[str, Any]]:
    """The held-out rows, read like training data (same columns, system prompt and template settings)."""
    return held_out_rows(config)[0]


def held_out_rows(config: TrainingConfig) -> tuple[list[dict[str, Any]], int]:
    """The held-out rows, and how many generated ones were left out because training has them too."""
    from retrain.data import as_chat_rows, load_rows

    evaluation = config.evaluation
    assert evaluation is not None
    if evaluation.reasoning_gym is not None:
        from retrain.task_sets import held_out, tasks_of

        spec = evaluation.reasoning_gym
        training = config.data.reasoning_gym
        tasks = tasks_of(spec.tasks if spec.tasks is not None else training.tasks)  # type: ignore[union-attr]
        generated, left_out = held_out(load_rows(config.data) if training is not None else None, tasks, spec.size,
                                       spec.seed, "evaluation.reasoning_gym")
        rows = as_chat_rows(generated, config.data, "evaluation.reasoning_gym")
        return (rows[: evaluation.max_prompts] if evaluation.max_prompts else rows), left_out
    data = DataConfig(
        prompts=evaluation.prompts, source=evaluation.source, split=evaluation.split,
        prompt_column=config.data.prompt_column, answer_column=config.data.answer_column,
        system_prompt=config.data.system_prompt, chat_template_kwargs=config.data.chat_template_kwargs,
    )
    try:
        rows = load_rows(data)
    except ConfigError as exc:  # name the evaluation's fields, not data's
        raise ConfigError([ConfigIssue(
            _eval_field(issue.field), issue.line, issue.message)
            for issue in exc.issues]) from None
    return (rows[: evaluation.max_prompts] if evaluation.max_prompts else rows), 0


# -- what to evaluate ------------------------------------------------------------------------------


@dataclass
class Target:
    """A model to evaluate: the folder `from_pretrained` loads, and what it is."""

    label: str  # as the person named it
    step: int | None  # the training step its weights are from (0: the base model), when known
    path: str  # a folder or hub id


def _verl_checkpoint(path: Path) -> Path | None:
    """The `global_step_N` folder of a verl checkpoint given as itself or its `actor/` folder."""
    for folder in (path, path.parent):
        if folder.name.startswith("global_step_") and (folder / "actor").is_dir():
            return folder
    return None


@contextmanager
def resolve_target(reference: str | Path, config: TrainingConfig | None = None) -> Iterator[Target]:
    """A model reference (a name or folder, a run directory, a checkpoint) as a loadable folder. A verl
    checkpoint is exported with verl's own model merger into a temporary folder, removed afterwards."""
    from retrain.models import resolve_model

    path = Path(str(reference)).expanduser()
    if path.is_dir() and (path / "config.yaml").is_file() and (path / "summary.json").is_file():
        run = RunDir(path)
        if (run.model_dir / "config.json").is_file() or (run.model_dir / "adapter_config.json").is_file():
            records = run.metrics()
            yield Target(str(reference), records[-1]["step"] if records else None, str(run.model_dir))
            return
        raise EvaluationError(f"the run {path} has no final model (it did not finish); evaluate one of its "
                              f"checkpoints: {[str(c) for c in run.checkpoints()] or 'none'}")
    verl = _verl_checkpoint(path) if path.is_dir() else None
    if verl is not None:
        from retrain.backends.verl.launch import export_model

        step = RunDir.checkpoint_step(verl)
        with tempfile.TemporaryDirectory(prefix="retrain-eval-") as tmp:
            target = export_model(verl, Path(tmp) / "model", Path(tmp) / "merge.log")
            yield Target(str(reference), step, str(target))
        return
    if path.is_dir() and path.name.startswith("checkpoint-"):
        yield Target(str(reference), RunDir.checkpoint_step(path), str(path))
        return
    name = str(reference)
    if config is not None and name == config.model.name:
        yield Target(name, 0, resolve_model(name, config.model.revision))
        return
    yield Target(name, None, resolve_model(name))


def load_model(path: str) -> tuple[Any, Any, str]:
    """(model in eval mode: float32 on a CPU, bfloat16 on the first GPU when there is one; tokenizer; the dtype
    the weights were stored in). A LoRA adapter (TRL's `adapter_config.json`, verl's `lora_adapter/`) is merged
    into its base model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # loading bars and tokenizer notices: not what a person evaluates
    hf_logging.disable_progress_bar()
    folder = Path(path)
    adapter = None
    if (folder / "adapter_config.json").is_file():
        adapter = folder
        base = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
    elif (folder / "lora_adapter" / "adapter_config.json").is_file():
        adapter, base = folder / "lora_adapter", str(folder)
    else:
        base = path
    stored = _stored_dtype(Path(base))
    model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    if torch.cuda.is_available():  # every model evaluated on one machine is computed the same way
        model = model.to(device="cuda", dtype=torch.bfloat16)
    tokenizer_from = path if (folder / "tokenizer_config.json").is_file() else base
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    return model.eval(), tokenizer, stored


def _stored_dtype(folder: Path) -> str:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return "unknown"
    return str(config.get("dtype") or config.get("torch_dtype") or "unknown")


def _free_accelerator_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- generation ------------------------------------------------------------------------------------


@dataclass
class Completion:
    row: int  # which held-out prompt
    prompt_ids: list[int]
    ids: list[int]
    text: str


def generate(model: Any, tokenizer: Any, prompts: list[list[int]], evaluation: EvaluationConfig, max_tokens: int,
             seed: int, on_batch: Callable[[int], None] | None = None) -> list[Completion]:
    """`evaluation.n` completions of each prompt (token ids after the chat template), batched, left-padded.
    Seeded once, in a fixed order: the same model, prompts and settings give the same completions."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id
    queue = [(row, ids) for row, ids in enumerate(prompts) for _ in range(evaluation.n)]
    sampling: dict[str, Any] = {"do_sample": False}
    if evaluation.temperature > 0:
        sampling = {"do_sample": True, "temperature": evaluation.temperature, "top_p": evaluation.top_p,
                    "top_k": evaluation.top_k or 0}
    else:  # greedy: no sampling knob may come from the model's generation_config
        sampling |= {"temperature": None, "top_p": None, "top_k": None}
    torch.manual_seed(seed)
    done: list[Completion] = []
    for start in range(0, len(queue), evaluation.batch_size):
        batch = queue[start: start + evaluation.batch_size]
        width = max(len(ids) for _, ids in batch)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for _, ids in batch], device=model.device)
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for _, ids in batch], device=model.device)
        with torch.no_grad():
            out = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=max_tokens,
                                 eos_token_id=eos, pad_token_id=pad, **sampling)
        for (row, ids), sequence in zip(batch, out[:, width:].tolist(), strict=True):
            if eos in sequence:
                sequence = sequence[: sequence.index(eos) + 1]
            else:
                sequence = [token for token in sequence if token != pad] if pad != eos else sequence
            done.append(Completion(row, ids, sequence, tokenizer.decode(sequence, skip_special_tokens=True)))
        if on_batch is not None:
            on_batch(len(batch))
    return done


# -- one evaluation ----------------------------------------------------------------------------------


@dataclass
class EvalResult:
    model: str
    step: int | None
    prompts: int
    n: int
    metrics: dict[str, float]
    correct_rule: str
    weights_dtype: str
    seconds: float
    compute: str = ""  # the dtype and device the evaluator computed in: float32 on cpu, bfloat16 on cuda
    samples: list[dict[str, Any]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """The eval.jsonl line: the step, what was evaluated, and the metrics."""
        return {"step": self.step, "model": self.model, "prompts": self.prompts, "n": self.n,
                "weights_dtype": self.weights_dtype, "compute": self.compute, "correct": self.correct_rule,
                "seconds": self.seconds,
                **self.metrics}

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "samples"}


class _Progress:
    """Completions generated so far: a bar on a terminal, a line per quarter elsewhere (logs, CI)."""

    def __init__(self, console: Console | None, total: int, description: str):
        self.console, self.total, self.seen, self.bar, self.said = console, total, 0, None, 0
        if console is None:
            return
        if console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("completions"), TimeRemainingColumn(), console=console)
            self.bar.start()
            self.task = self.bar.add_task(description, total=total)
        else:
            console.print(f"{description}: {total} completions", highlight=False)

    def advance(self, count: int) -> None:
        self.seen += count
        if self.bar is not None:
            self.bar.update(self.task, completed=self.seen)
        elif self.console is not None and self.seen * 4 >= (self.said + 1) * self.total:
            self.said = self.seen * 4 // self.total
            self.console.print(f"  {self.seen}/{self.total} completions", highlight=False)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def evaluate(config: TrainingConfig, reference: str | Path, *, console: Console | None = None,
             rows: list[dict[str, Any]] | None = None, scorer: Scorer | None = None) -> EvalResult:
    """Evaluate one model on the config's held-out set (progress on `console` when given)."""
    evaluation = config.evaluation
    if evaluation is None:
        raise ConfigError([ConfigIssue("evaluation", None, "the config has no `evaluation` section; add held-out "
                                                           "prompts (evaluation.prompts or evaluation.source)")])
    rows = eval_rows(config) if rows is None else rows
    scorer = scorer or Scorer.from_config(config)
    is_correct, rule = correctness(config, scorer)
    started = time.monotonic()
    with resolve_target(reference, config) as target:
        model, tokenizer, stored = load_model(target.path)
        compute = f"{str(next(model.parameters()).dtype).removeprefix('torch.')} on {model.device.type}"
        prompts = [tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True,
                                                 return_dict=False, **config.data.chat_template_kwargs)
                   for row in rows]
        max_tokens = evaluation.max_completion_tokens or config.algorithm.max_completion_tokens
        seed = config.training.seed if evaluation.seed is None else evaluation.seed
        shown = _Progress(console, len(prompts) * evaluation.n, f"evaluating {target.label}")
        try:
            completions = generate(model, tokenizer, prompts, evaluation, max_tokens, seed, shown.advance)
        finally:
            shown.stop()
            del model  # before training starts (the baseline): the memory is the trainer's
            _free_accelerator_memory()
    columns = [{k: v for k, v in row.items() if k != "prompt"} for row in rows]
    rollouts = [
        Rollout(prompt_messages=[Message(role=m["role"], content=m["content"]) for m in rows[c.row]["prompt"]],
                completion_messages=[Message(role="assistant", content=c.text)],
                prompt_token_ids=c.prompt_ids, completion_token_ids=c.ids, trainable_mask=[1] * len(c.ids),
                metadata=columns[c.row], rollout_id=f"eval-{c.row}-{i % evaluation.n}")
        for i, c in enumerate(completions)
    ]
    breakdowns = scorer.score_sync(rollouts)
    metrics = {f"eval/{key}": value for key, value in scorer.summarize(breakdowns).items()}
    metrics["eval/completion_length/mean"] = sum(len(c.ids) for c in completions) / len(completions)
    if is_correct is not None:
        verdicts = [is_correct(b) for b in breakdowns]
        per_prompt = [sum(verdicts[i * evaluation.n: (i + 1) * evaluation.n]) for i in range(len(rows))]
        metrics["eval/correct_rate"] = sum(verdicts) / len(verdicts)
        for k in evaluation.pass_at:
            metrics[f"eval/pass@{k}"] = sum(pass_at_k(evaluation.n, c, k) for c in per_prompt) / len(per_prompt)
    samples = [{"prompt": r.prompt, "completion": r.completion, "breakdown": b.to_dict(),
                **({"correct": is_correct(b)} if is_correct is not None else {})}
               for r, b in zip(rollouts, breakdowns, strict=True)]
    return EvalResult(model=str(reference), step=target.step, prompts=len(rows), n=evaluation.n, metrics=metrics,
                      correct_rule=rule, weights_dtype=stored, seconds=time.monotonic() - started, compute=compute,
                      samples=samples)


def write_result(folder: Path, result: EvalResult, step: int | None = None, samples_name: str | None = None) -> None:
    """Append the record to `folder/eval.jsonl` and keep the completions in `folder/eval_samples/` (in
    `samples_name`, by default `step_<N>.jsonl`)."""
    record = result.record()
    if step is not None:
        record["step"] = step
    writer = JsonlWriter(folder / EVAL_FILE)
    writer.write(record)
    writer.close()
    name = samples_name or (f"step_{record['step']:06d}.jsonl" if isinstance(record["step"], int) else "model.jsonl")
    samples = JsonlWriter(folder / EVAL_SAMPLES / name)
    for sample in result.samples:
        samples.write(sample)
    samples.close()


def read_results(folder: Path) -> list[dict[str, Any]]:
    """The evaluations recorded in a run directory (or a `retrain eval` output folder), in order."""
    return read_jsonl(folder / EVAL_FILE)


def metric_names(records: list[dict[str, Any]]) -> list[str]:
    """The `eval/...` keys, headline first: reward, pass@k, correct rate, then components and length."""
    keys = sorted({k for r in records for k in r if k.startswith("eval/")})
    first = [k for k in keys if k == "eval/reward/mean"] + [k for k in keys if k.startswith("eval/pass@")]
    first += [k for k in keys if k == "eval/correct_rate"]
    return first + [k for k in keys if k not in first]


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.4f}"
    return "—" if value is None else str(value)


# -- in a run: the baseline before training, checkpoints and the final model after ---------------------


def _say(console: Console | None, result: EvalResult, what: str) -> None:
    if console is None:
        return
    shown = [k for k in metric_names([result.metrics]) if k == "eval/reward/mean" or k.startswith("eval/pass@")]
    numbers = "  ".join(f"{k.removeprefix('eval/')} {fmt(result.metrics[k])}" for k in shown)
    console.print(f"eval ({what}): {numbers}  [{result.prompts} prompts x {result.n}]", highlight=False)


def _note_left_out(console: Console | None, left_out: int) -> None:
    if console is not None and left_out:
        console.print(f"note: {left_out} generated held-out row(s) ask a question the training rows ask too; left out",
                      highlight=False)


def evaluate_before(config: TrainingConfig, run_dir: Path, console: Console | None = None,
                    baseline: EvalResult | None = None) -> EvalResult | None:
    """The baseline (step 0): the config's model before training, unless the run already has it (a resume).
    `baseline`: an evaluation of the same model already made (`retrain compare` evaluates it once)."""
    evaluation = config.evaluation
    if evaluation is None or not evaluation.before:
        return None
    if any(record.get("step") == 0 for record in read_results(run_dir)):
        return None
    result = baseline or evaluate(config, config.model.name, console=console)
    write_result(run_dir, result, step=0)
    _say(console, result, "baseline, before training")
    return result


def evaluate_after(config: TrainingConfig, run_dir: Path, console: Console | None = None) -> list[dict[str, Any]]:
    """After a completed run: the checkpoints of every `every_steps`-th step, then the final model; each step
    once (a resumed run keeps what it evaluated). Returns every evaluation record of the run."""
    evaluation = config.evaluation
    if evaluation is None:
        return []
    run = RunDir(run_dir)
    records = run.metrics()
    last = int(records[-1]["step"]) if records else 0
    done = {record.get("step") for record in read_results(run_dir)}
    rows, left_out = held_out_rows(config)
    _note_left_out(console, left_out)
    scorer = Scorer.from_config(config)
    if evaluation.every_steps:
        for checkpoint in run.checkpoints():
            step = RunDir.checkpoint_step(checkpoint)
            if step % evaluation.every_steps or step in done or (evaluation.after and step == last):
                continue
            result = evaluate(config, checkpoint, console=console, rows=rows, scorer=scorer)
            write_result(run_dir, result, step=step)
            done.add(step)
            _say(console, result, f"step {step}")
    if evaluation.after and last not in done:
        result = evaluate(config, run_dir, console=console, rows=rows, scorer=scorer)
        write_result(run_dir, result, step=last)
        _say(console, result, f"final model, step {last}")
    return read_results(run_dir)


# -- `retrain eval` ---------------------------------------------------------------------------------


def load_eval_config(path: str | Path, n: int | None = None) -> TrainingConfig:
    """The config for `retrain eval`, with `--n` applied before validation (so pass_at is checked against it)."""
    from retrain.core.run import load_config
    from retrain.core.yaml_source import load_yaml_with_lines

    if n is None:
        config = load_config(path)
    else:
        data, lines = load_yaml_with_lines(path)
        if isinstance(data, dict) and isinstance(data.get("evaluation"), dict):
            data = {**data, "evaluation": {**data["evaluation"], "n": n}}
        config = TrainingConfig.from_data(data, source=str(path), lines=lines)
        config._source_path = Path(path)
    if config.evaluation is None:
        raise ConfigError([ConfigIssue("evaluation", None, "the config has no `evaluation` section; add held-out "
                                                           "prompts (evaluation.prompts or evaluation.source)")],
                          source=str(path))
    return config


def markdown(results: list[EvalResult], title: str) -> str:
    """A table of evaluations side by side: one column per model, one row per metric."""
    names = metric_names([r.metrics for r in results])
    lines = [f"# {title}", "", "| metric | " + " | ".join(f"`{r.model}`" for r in results) + " |",
             "|---|" + "---:|" * len(results)]
    lines += [f"| {name.removeprefix('eval/')} | " + " | ".join(fmt(r.metrics.get(name)) for r in results) + " |"
              for name in names]
    first = results[0]
    lines += ["", f"{first.prompts} held-out prompts x {first.n} completions; {first.correct_rule}. pass@k: the "
              "unbiased estimator 1 - C(n-c,k)/C(n,k), averaged over prompts. Weights as stored: "
              + ", ".join(f"`{r.model}` {r.weights_dtype}" for r in results) + "."]
    return "\n".join(lines) + "\n"


def run_eval(config: TrainingConfig, models: list[str], output_dir: str | Path | None = None,
             console: Console | None = None) -> Path:
    """`retrain eval`: each model on the config's held-out set, into `<output_dir>/eval-<name>-<time>/`
    (eval.jsonl, eval_samples/, eval.json, eval.md); prints the table. Returns the folder."""
    from rich.table import Table

    name = config.training.run_name or (config.source_path.stem if config.source_path else "run")
    folder = RunDir.create(output_dir if output_dir is not None else config.training.output_dir, f"eval-{name}").path
    rows, left_out = held_out_rows(config)
    _note_left_out(console, left_out)
    scorer = Scorer.from_config(config)
    results = []
    for model in models:
        result = evaluate(config, model, console=console, rows=rows, scorer=scorer)
        results.append(result)
        write_result(folder, result, samples_name=f"model_{len(results):02d}.jsonl")
    (folder / "eval.json").write_text(json.dumps([r.to_dict() for r in results], indent=2, default=str) + "\n",
                                      encoding="utf-8")
    (folder / "eval.md").write_text(markdown(results, f"retrain eval: {name}"), encoding="utf-8")
    if console is not None:
        table = Table(title=f"retrain eval: {name} ({results[0].prompts} prompts x {results[0].n})",
                      title_justify="left", caption=results[0].correct_rule, caption_justify="left")
        table.add_column("metric", overflow="fold")
        for result in results:
            table.add_column(result.model if len(result.model) < 40 else "…" + result.model[-39:], justify="right")
        for key in metric_names([r.metrics for r in results]):
            table.add_row(key.removeprefix("eval/"), *[fmt(r.metrics.get(key)) for r in results])
        console.print(table)
        console.print(f"results: {folder}", soft_wrap=True, highlight=False)
    return folder
