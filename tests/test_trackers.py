"""Experiment trackers (`logging.trackers`), real and offline: TensorBoard event files, an MLflow SQLite store,
W&B offline run files and Trackio's local store, each read back with the tracker's own reader
(tests/tracker_readers.py) and compared with the run's metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from retrain.compare import compare, parse_sets
from retrain.core.errors import ConfigError
from retrain.core.run import run_sync
from retrain.core.run_dir import RunDir
from retrain.testing.openai_server import free_port
from tests.tiny_runs import QUIET, tiny_config
from tests.tracker_readers import mlflow_run, tensorboard_scalars, tensorboard_text, trackio_run, wandb_offline_run

ALL = ["tensorboard", "wandb", "mlflow", "trackio"]
for _module in ("tensorboard", "wandb", "mlflow", "trackio"):  # `make test` installs them (retrain[trackers])
    pytest.importorskip(_module, reason="the tracker tests need pip install 'retrain[trackers]'")


def tracked(tmp_path: Path, trackers: list[str], backend: str = "trl", **logging) -> dict:
    config = tiny_config(tmp_path, backend=backend)
    config["training"]["samples_per_step"] = 4
    config["logging"] = {"trackers": trackers, "project": "cats", **logging}
    return config


def neutral(run_dir: Path) -> dict[str, dict[int, float]]:
    """metrics.jsonl as {name: {step: value}} (numbers only): what every tracker must show."""
    series: dict[str, dict[int, float]] = {}
    for record in RunDir(run_dir).metrics():
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                series.setdefault(key, {})[record["step"]] = float(value)
    return series


def same(got: dict[str, dict[int, float]], expected: dict[str, dict[int, float]], rel: float = 1e-12) -> None:
    assert sorted(got) == sorted(expected)
    for key, steps in expected.items():
        assert got[key] == pytest.approx(steps, rel=rel, abs=1e-9), key


def read_all(run_dir: Path, project: str = "cats") -> dict[str, tuple]:
    state = json.loads((run_dir / "trackers.json").read_text())
    return {
        "tensorboard": tensorboard_scalars(run_dir / "tensorboard"),
        "mlflow": mlflow_run(state["mlflow"]["tracking_uri"], state["mlflow"]["run_id"]),
        "wandb": wandb_offline_run(run_dir),
        "trackio": trackio_run(Path(state["trackio"]["store"]), project, run_dir.name),
    }


def test_a_trl_run_reaches_every_tracker_with_the_neutral_names_steps_config_and_samples(tmp_path):
    import sys

    trackio_fresh = "trackio" not in sys.modules  # Trackio fixes its store at its first import in a process
    summary = run_sync(tracked(tmp_path, ALL, group="g1"), max_steps=3, console=QUIET)
    run_dir = Path(summary["run_dir"])
    expected = neutral(run_dir)
    assert {"reward/mean", "loss", "verifiers/mentions_a_cat/pass_rate", "learning_rate"} <= set(expected)
    assert all(sorted(steps) == [1, 2, 3] for steps in expected.values())
    found = read_all(run_dir)

    scalars, tensors = found["tensorboard"]
    same(scalars, expected, rel=1e-6)  # event files hold float32
    assert {"config/text_summary", "samples/text_summary"} <= set(tensors)
    assert "| algorithm.learning_rate | 0.001 |" in tensorboard_text(run_dir / "tensorboard", "config/text_summary")[0]
    assert sorted(tensorboard_text(run_dir / "tensorboard", "samples/text_summary")) == [1, 2, 3]

    series, params, tags, artifacts = found["mlflow"]
    same(series, expected)
    assert params["algorithm.learning_rate"] == "0.001" and params["settings/optimizer.lr"] == "0.001"
    assert tags["retrain.group"] == "g1" and tags["retrain.backend"] == "trl"
    assert artifacts == [f"samples/step_00000{step}.json" for step in (1, 2, 3)]

    history, config, info = found["wandb"]
    tables = {key: history.pop(key) for key in [k for k in history if k.startswith("samples/")]}
    same(history, expected)
    assert tables["samples/_type"] == {1: "table-file", 2: "table-file", 3: "table-file"}
    assert tables["samples/nrows"] == {1: 4.0, 2: 4.0, 3: 4.0}
    assert config["algorithm.learning_rate"] == 0.001 and "settings/optimizer.lr" in config
    assert info == {"project": "cats", "group": "g1", "name": run_dir.name, "id": info["id"]}

    series, config, samples = found["trackio"]
    same(series, expected)
    assert config["algorithm.learning_rate"] == 0.001
    assert [(table["step"], len(table["rows"])) for table in samples] == [(1, 4), (2, 4), (3, 4)]
    assert set(samples[0]["rows"][0]) == {"step", "prompt", "completion", "total", "breakdown"}

    # The run stops what its trackers started (W&B's wandb-core service).
    import os

    import psutil

    assert [c.name() for c in psutil.Process(os.getpid()).children(recursive=True) if "wandb" in c.name()] == []
    # Everything local stays in the run directory (Trackio: its one store, in the output directory).
    assert {"tensorboard", "wandb", "mlflow.db", "mlflow-artifacts", "trackers.json"} <= {p.name for p in
                                                                                        run_dir.iterdir()}
    store = json.loads((run_dir / "trackers.json").read_text())["trackio"]["store"]
    assert store == str(tmp_path / "runs" / "trackio") or not trackio_fresh


@pytest.mark.slow  # a training run or two each: the default suite keeps the main tracker test
def test_resuming_continues_the_same_tracker_runs(tmp_path):
    config = tracked(tmp_path, ["wandb", "mlflow"])
    first = run_sync(config, max_steps=2, console=QUIET)
    run_dir = Path(first["run_dir"])
    before = json.loads((run_dir / "trackers.json").read_text())
    run_sync(config, resume=run_dir, max_steps=3, console=QUIET)
    after = json.loads((run_dir / "trackers.json").read_text())
    assert after["wandb"]["id"] == before["wandb"]["id"] and after["mlflow"]["run_id"] == before["mlflow"]["run_id"]
    series, *_ = mlflow_run(after["mlflow"]["tracking_uri"], after["mlflow"]["run_id"])
    assert sorted(series["reward/mean"]) == [1, 2, 3]


def _console(tmp_path: Path) -> tuple[Console, Path]:
    path = tmp_path / "console.txt"
    return Console(file=path.open("w"), width=400), path


@pytest.mark.slow  # a training run or two each: the default suite keeps the main tracker test
def test_a_tracker_that_cannot_start_never_stops_the_run(tmp_path, monkeypatch):
    """An MLflow server that is not there: a warning naming the tracker, the run completes, metrics.jsonl is
    complete and the other tracker has every step."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    config = tracked(tmp_path, ["mlflow", "tensorboard"], mlflow={"tracking_uri": f"http://127.0.0.1:{free_port()}"})
    console, path = _console(tmp_path)
    summary = run_sync(config, max_steps=2, console=console)
    console.file.close()
    run_dir = Path(summary["run_dir"])
    assert summary["status"] == "completed" and sorted(neutral(run_dir)["reward/mean"]) == [1, 2]
    assert "warning: tracker 'mlflow' failed and is left out for the rest of the run" in path.read_text()
    same(tensorboard_scalars(run_dir / "tensorboard")[0], neutral(run_dir), rel=1e-6)


@pytest.mark.slow  # a training run or two each: the default suite keeps the main tracker test
def test_a_tracker_that_fails_mid_run_never_stops_the_run(tmp_path, monkeypatch):
    """MLflow's database overwritten with garbage during step 2 (as a failing disk would leave it): MLflow's next
    write fails; the run goes on to the end, metrics.jsonl is complete, TensorBoard has every step."""
    monkeypatch.setenv("RETRAIN_TEST_RUNS", str(tmp_path / "runs"))
    config = tracked(tmp_path, ["mlflow", "tensorboard"])
    config["rewards"]["functions"] = [{"function": "tests.test_trackers:corrupt_mlflow_after_step_1", "bounds": [0, 0]}]
    console, path = _console(tmp_path)
    summary = run_sync(config, max_steps=3, console=console)
    console.file.close()
    run_dir = Path(summary["run_dir"])
    assert (run_dir / "mlflow.db.corrupted").exists()  # the fault happened
    assert summary["status"] == "completed" and sorted(neutral(run_dir)["reward/mean"]) == [1, 2, 3]
    assert "warning: tracker 'mlflow' failed and is left out for the rest of the run" in path.read_text()
    same(tensorboard_scalars(run_dir / "tensorboard")[0], neutral(run_dir), rel=1e-6)


def corrupt_mlflow_after_step_1(completion: str) -> float:
    """A reward that, once step 1 is in metrics.jsonl, overwrites the run's MLflow database in place."""
    import os

    for metrics in Path(os.environ["RETRAIN_TEST_RUNS"]).glob("*/metrics.jsonl"):
        database = metrics.parent / "mlflow.db"
        marker = metrics.parent / "mlflow.db.corrupted"
        if metrics.read_text().strip() and not marker.exists():
            with database.open("r+b") as file:
                file.write(b"this is not a database any more" * 4096)
            marker.write_text("")
    return 0.0


def test_a_tracker_that_is_not_installed_is_a_validation_error_naming_the_extra(tmp_path, monkeypatch):
    # Stand-in: every tracker is installed here (the dev extra), so one is made to look missing.
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trackio" else real(name, *a))
    with pytest.raises(ConfigError) as info:
        run_sync(tracked(tmp_path, ["tensorboard", "trackio"]), max_steps=1, console=QUIET)
    (issue,) = info.value.issues
    assert issue.field == "logging.trackers" and "pip install 'retrain[trackio]'" in issue.message


def test_a_raw_report_to_is_an_error_naming_logging_trackers(tmp_path):
    config = tiny_config(tmp_path)
    config["backend_options"] = {"trl": {"report_to": "wandb"}}
    with pytest.raises(ConfigError) as info:
        run_sync(config, max_steps=1, console=QUIET)
    (issue,) = info.value.issues
    assert issue.field == "backend_options.trl.report_to" and "logging.trackers" in issue.message


@pytest.mark.slow  # a training run or two each: the default suite keeps the main tracker test
def test_compare_logs_its_runs_to_one_group_and_one_mlflow_store(tmp_path):
    config = tracked(tmp_path, ["mlflow", "trackio"])
    result = compare(config, ["trl"], max_steps=1, console=QUIET, show_progress=False,
                     variants=parse_sets(["algorithm.learning_rate=0.001,0.002"]))
    folder = result.output_dir
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "cats"]
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.data.params["algorithm.learning_rate"] for run in runs) == ["0.001", "0.002"]
    assert {run.data.tags["retrain.group"] for run in runs} == {folder.name}
    for run in result.runs:  # Trackio's store is fixed per process at its first import: read where it went
        store = Path(json.loads((run.path / "trackers.json").read_text())["trackio"]["store"])
        series, config_logged, _ = trackio_run(store, "cats", run.path.name)
        assert sorted(series["reward/mean"]) == [1] and config_logged["logging.group"] == folder.name


@pytest.mark.slow
def test_one_config_on_trl_and_verl_gives_the_same_names_at_the_same_steps_in_every_tracker(tmp_path):
    """The point of logging the neutral record: a TRL run and a verl run of one config sit in one chart."""
    names: dict[str, dict[str, dict[str, list[int]]]] = {}
    for backend in ("trl", "verl"):
        summary = run_sync(tracked(tmp_path / backend, ALL, backend=backend), max_steps=2, console=QUIET)
        run_dir = Path(summary["run_dir"])
        expected = neutral(run_dir)
        found = read_all(run_dir)
        wandb_history = {k: v for k, v in found["wandb"][0].items() if not k.startswith("samples/")}
        per_tracker = {"tensorboard": found["tensorboard"][0], "mlflow": found["mlflow"][0], "wandb": wandb_history,
                       "trackio": found["trackio"][0]}
        for tracker, series in per_tracker.items():
            same(series, expected, rel=1e-6 if tracker == "tensorboard" else 1e-12)
        names[backend] = {tracker: {key: sorted(steps) for key, steps in series.items()}
                          for tracker, series in per_tracker.items()}
    for tracker in ALL:
        assert names["trl"][tracker] == names["verl"][tracker], tracker
