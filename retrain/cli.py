"""`retrain run | validate | translate`: the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

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


def _fail(exc: BaseException) -> None:
    if isinstance(exc, ConfigError):
        console.print(f"[red]error:[/] {exc.render()}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def run(
    config: ConfigPath,
    backend: BackendOption = None,
    model: ModelOption = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1, help="Override algorithm.max_steps.")] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", help="Override training.output_dir.")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="A run directory to resume.")] = None,
) -> None:
    """Train: writes a new run directory (metrics, samples, checkpoints, model) and prints a summary."""
    from retrain.core.run import run_sync

    try:
        summary = run_sync(
            config, backend=backend, model=model, max_steps=max_steps, output_dir=output_dir, resume=resume,
            console=console,
        )
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: checkpoints and metrics so far are kept")
        raise typer.Exit(130) from None
    except RetrainError as exc:
        _fail(exc)
    else:
        if summary["status"] != "completed":
            raise typer.Exit(1)


@app.command()
def validate(config: ConfigPath, backend: BackendOption = None, model: ModelOption = None) -> None:
    """Check a config without training; exits non-zero with every problem found."""
    from retrain.core.run import load_config

    try:
        resolved = load_config(config, backend=backend, model=model)
    except RetrainError as exc:
        _fail(exc)
    else:
        console.print(f"[green]ok[/]: {config} is valid for backend '{resolved.backend}'")


@app.command()
def translate(config: ConfigPath, backend: BackendOption = None, model: ModelOption = None) -> None:
    """Print the native config the backend will receive."""
    from retrain.core.registry import load_backend
    from retrain.core.run import load_config

    try:
        resolved = load_config(config, backend=backend, model=model)
        native = load_backend(resolved.backend).translate(resolved)
    except RetrainError as exc:
        _fail(exc)
    else:
        print(native.render())


def main() -> None:
    # Like `python -m`: 'module:function' paths in a config import from the current directory.
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        app()
    except RetrainError as exc:  # anything a command did not catch still reads as a message
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
