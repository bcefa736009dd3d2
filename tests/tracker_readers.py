"""Read back what each tracker wrote, with the tracker's own reader: {metric name: {step: value}}, and the
run's parameters. The tests compare these with the run's metrics.jsonl.

W&B 0.31 no longer ships a Python reader for its offline run file (its Go core writes it): the file is read
here as W&B's transaction log (LevelDB's log framing: 32 KiB blocks of records with a 7-byte header), each
record parsed with W&B's own protobuf message (`wandb.proto.wandb_internal_pb2.Record`).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

Series = dict[str, dict[int, float]]


def tensorboard_scalars(log_dir: Path) -> tuple[Series, list[str]]:
    """Scalars by tag and step, and the text summaries' tags, through TensorBoard's EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    series = {tag: {event.step: event.value for event in accumulator.Scalars(tag)}
              for tag in accumulator.Tags()["scalars"]}
    return series, list(accumulator.Tags()["tensors"])


def tensorboard_text(log_dir: Path, tag: str) -> dict[int, str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    accumulator.Reload()
    return {event.step: event.tensor_proto.string_val[0].decode() for event in accumulator.Tensors(tag)}


def mlflow_run(tracking_uri: str, run_id: str) -> tuple[Series, dict[str, str], dict[str, str], list[str]]:
    """(metrics by key and step, params, tags, artifact paths) through MLflow's client."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.get_run(run_id)
    series = {key: {m.step: m.value for m in client.get_metric_history(run_id, key)} for key in run.data.metrics}
    artifacts = [item.path for item in client.list_artifacts(run_id, "samples")]
    return series, dict(run.data.params), dict(run.data.tags), artifacts


def _wandb_records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1, f"not a W&B run file: {path}"
    block, records, pending, position = 32768, [], b"", 7
    while position + 7 <= len(data):
        room = block - position % block
        if room < 7:  # the rest of a block too small for a header is padding
            position += room
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[position:position + 7])
        chunk = data[position + 7:position + 7 + length]
        position += 7 + length
        if kind == 1:  # FULL
            records.append(chunk)
        elif kind == 2:  # FIRST
            pending = chunk
        elif kind == 3:  # MIDDLE
            pending += chunk
        elif kind == 4:  # LAST
            records.append(pending + chunk)
            pending = b""
        elif kind == 0 and length == 0:
            position += room - 7  # zero padding to the block's end
    return records


def wandb_offline_run(run_dir: Path) -> tuple[Series, dict[str, Any], dict[str, Any]]:
    """(history by key and step, config, run info) of the single offline run under `run_dir/wandb`."""
    from wandb.proto import wandb_internal_pb2 as pb

    (run_file,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    series: Series = {}
    config: dict[str, Any] = {}
    info: dict[str, Any] = {}
    for raw in _wandb_records(run_file):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            step = record.history.step.num
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                value = json.loads(item.value_json)
                if not key.startswith("_") and isinstance(value, int | float):
                    series.setdefault(key, {})[step] = float(value)
                elif not key.startswith("_"):
                    series.setdefault(key, {})[step] = value
        elif kind == "config":
            for item in record.config.update:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "run":
            info = {"project": record.run.project, "group": record.run.run_group, "name": record.run.display_name,
                    "id": record.run.run_id}
            for item in record.run.config.update:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return series, config, info


def trackio_run(store: Path, project: str, name: str) -> tuple[Series, dict[str, Any], list[dict[str, Any]]]:
    """(metrics by key and step, config, table logs) through Trackio's SQLite storage (in a subprocess:
    Trackio reads its store's location once, at import)."""
    import subprocess
    import sys

    script = (
        "import json, sys\nfrom trackio.sqlite_storage import SQLiteStorage\n"
        "logs = SQLiteStorage.get_logs(sys.argv[1], sys.argv[2])\n"
        "config = SQLiteStorage.get_run_config(sys.argv[1], sys.argv[2])\n"
        "print(json.dumps({'logs': logs, 'config': config}, default=str))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, project, name], capture_output=True, text=True, check=True,
                          env={**__import__("os").environ, "TRACKIO_DIR": str(store)}, timeout=120)
    payload = json.loads(done.stdout.strip().splitlines()[-1])
    series: Series = {}
    tables = []
    for log in payload["logs"]:
        step = log["step"]
        for key, value in log.items():
            if key in ("step", "timestamp"):
                continue
            if isinstance(value, dict) and value.get("_type") == "trackio.table":
                tables.append({"step": step, "key": key, "rows": value["_value"]})
            elif isinstance(value, int | float):
                series.setdefault(key, {})[step] = float(value)
    return series, payload["config"] or {}, tables
