"""`retrain run | validate | translate | compare | eval | report`: the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from retrain.core.errors import ConfigError, RetrainError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Teach language models new skills with reinforcement learning, on an existing RL library: TRL or verl.",
)
console = Console(stderr=True)

ConfigPath = Annotated[Path, typer.Argument(help="The YAML config.", show_default=False)]
BackendOption = Annotated[str | None, typer.Option("--backend", help="Override `backend`.")]
ModelOption = Annotated[str | None, typer.Option("--model", help="Override the model (e.g. retrain:tiny).")]
TrackersOption = Annotated[str | None, typer.Option(
    "--trackers", help="Override logging.trackers: a comma-separated list of tensorboard, wandb, mlflow, trackio "
    "('' for none).")]


def _trackers(text: str | None) -> list[str] | None:
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]


def _fail(exc: BaseException, config: Path | None = None) -> None:
    if isinstance(exc, ConfigError):
        if config is not None:
            from retrain.core.config import locate

            exc = locate(exc, config)
        console.print(f"[red]error:[/] {escape(exc.render())}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def run(
    config: ConfigPath,
    backend: BackendOption = None,
    model: ModelOption = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1, help="Override algorithm.max_steps.")] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", help="Override training.output_dir.")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="A run directory to resume.")] = None,
    trackers: TrackersOption = None,
) -> None:
    """Train: writes a new run directory (metrics, samples, checkpoints, model) and prints a summary."""
    from retrain.core.run import run_sync

    try:
        summary = run_sync(
            config, backend=backend, model=model, max_steps=max_steps, output_dir=output_dir, resume=resume,
            console=console, trackers=_trackers(trackers),
        )
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: checkpoints and metrics so far are kept")
        _let_rules_finish()
        raise typer.Exit(130) from None
    except RetrainError as exc:
        _fail(exc, config)
    else:
        if summary["status"] != "completed":
            raise typer.Exit(1)


def _let_rules_finish() -> None:
    """After Ctrl-C: a reward still computing in native code when the interpreter exits can abort the process
    (exit -6 instead of 130); give the running ones a bounded moment (retrain.core.scoring)."""
    from retrain.core.scoring import wait_for_running_rules

    wait_for_running_rules(timeout=30)


@app.command()
def validate(config: ConfigPath, backend: BackendOption = None, model: ModelOption = None) -> None:
    """Check a config without training, and its data file; exits non-zero with every problem found."""
    from retrain.core.run import load_config
    from retrain.data import check_evaluation_source, check_source

    try:
        resolved = load_config(config, backend=backend, model=model)
        check_source(resolved.data)
        check_evaluation_source(resolved)
    except RetrainError as exc:
        _fail(exc, config)
    else:
        console.print(f"[green]ok[/]: {escape(str(config))} is valid for backend '{resolved.backend}'")
        for note in resolved.preflight_notes():
            console.print(escape(note), highlight=False)


@app.command()
def translate(
    config: ConfigPath,
    backend: BackendOption = None,
    model: ModelOption = None,
    backends: Annotated[str | None, typer.Option(
        "--backends", help="Instead: each backend's effective settings side by side (e.g. trl,verl), every "
        "difference marked; exits 1 on a difference that is not declared.")] = None,
) -> None:
    """Print the native config the backend will receive, or (--backends) the settings each library will apply."""
    from retrain.core.registry import load_backend
    from retrain.core.run import load_config

    if backends is not None:
        from retrain.compare import parse_backends
        from retrain.core.settings import render_text, side_by_side, undeclared

        try:
            names = parse_backends(backends)
            rows = side_by_side(config, names, model=model)
        except RetrainError as exc:
            _fail(exc, config)
        print(render_text(rows, names))
        if undeclared(rows):
            raise typer.Exit(1)
        return
    try:
        resolved = load_config(config, backend=backend, model=model)
        native = load_backend(resolved.backend).translate(resolved)
    except RetrainError as exc:
        _fail(exc, config)
    else:
        expanded = ", ".join(f"{key}: {value}" for key, value in resolved.algorithm.expanded().items())
        print(f"# algorithm '{resolved.algorithm.name}' expands to: {expanded}")
        print(native.render())


@app.command()
def compare(
    config: ConfigPath,
    backends: Annotated[str, typer.Option("--backends", help="Backends to train on, comma-separated.")] = "trl,verl",
    model: ModelOption = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1, help="Override algorithm.max_steps.")] = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", help="Where the compare-<name>-<time>/ folder goes.")
    ] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="A grid: FIELD=A,B,... (any dotted field, e.g. algorithm.name=grpo,rloo,dapo); every "
        "value on every backend, one report. Repeat for more fields (every combination).")] = None,
    trackers: TrackersOption = None,
) -> None:
    """Train one config on several backends (same seed, data and rewards) and report them side by side:
    report.md, report.json and PNG plots. With --set, each variant of the config on each backend."""
    from retrain.compare import compare as compare_backends
    from retrain.compare import parse_backends, parse_sets

    try:
        result = compare_backends(config, parse_backends(backends), model=model, max_steps=max_steps,
                                  output_dir=output_dir, console=console, variants=parse_sets(set_ or []),
                                  trackers=_trackers(trackers))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: the runs so far and their report are kept")
        _let_rules_finish()
        raise typer.Exit(130) from None
    except RetrainError as exc:
        _fail(exc, config)
    else:
        if result.failed:
            console.print(f"[red]failed:[/] {', '.join(result.failed)}")
            raise typer.Exit(1)


@app.command("eval")
def eval_(
    config: ConfigPath,
    model: Annotated[list[str], typer.Option(
        "--model", help="What to evaluate: a model name or folder, a run directory (its final model) or a "
        "checkpoint folder; repeat to put several side by side.", show_default=False)],
    n: Annotated[int | None, typer.Option("--n", min=1, help="Override evaluation.n (completions per prompt).")] = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", help="Where the eval-<name>-<time>/ folder goes.")
    ] = None,
) -> None:
    """Evaluate models on the config's held-out set (its `evaluation` section): eval.md, eval.json, eval.jsonl
    and every completion with its breakdown."""
    from retrain.core.errors import RetrainError as _Error
    from retrain.data import check_evaluation_source
    from retrain.evaluation import load_eval_config, run_eval

    try:
        resolved = load_eval_config(config, n)
        check_evaluation_source(resolved)
        run_eval(resolved, list(model), output_dir, console=console)
    except _Error as exc:
        _fail(exc, config)


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories to report on.", show_default=False)],
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", help="Where to write (default: RUN_DIR/report, or report-<time>/).")
    ] = None,
) -> None:
    """Report on existing runs, side by side: report.md, report.json and PNG plots."""
    from retrain.compare import report as write_run_report

    try:
        write_run_report(list(run_dirs), output_dir, console=console)
    except RetrainError as exc:
        _fail(exc)


def main() -> None:
    # Like `python -m`: 'module:function' paths in a config import from the current directory.
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        app()
    except RetrainError as exc:  # anything a command did not catch still reads as a message
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
