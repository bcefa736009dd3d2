"""retrain's CPU rollout server for verl (retrain/backends/verl/cpu.py) loads the trainer's weights completely
or stops the run: a partial load would leave rollouts on the initial weights for the whole run.

The server class runs here outside Ray, in a subprocess: importing the plugin patches verl and TRL
process-wide (as it does in verl's workers), which must not leak into the other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys

from retrain.models import resolve_model

SCRIPT = r"""
import asyncio, json, sys
import torch
from transformers import AutoModelForCausalLM
from retrain.backends.verl.cpu import HFServer

def server():
    s = object.__new__(HFServer)
    s.model = AutoModelForCausalLM.from_pretrained(sys.argv[1], torch_dtype=torch.float32).eval()
    s.lock = asyncio.Lock()
    s.global_steps = None
    return s

def attempt(s, state_dict):
    try:
        asyncio.run(s.load_weights(state_dict, global_steps=3))
        return "ok"
    except RuntimeError as exc:
        return str(exc)

out = {}
s = server()
trained = {name: tensor + 0.5 for name, tensor in s.model.state_dict().items()}
tied = s.model.config.tie_word_embeddings
if tied:
    trained.pop("lm_head.weight", None)  # sent once, as the embeddings
out["full"] = attempt(s, trained)
out["weights_updated"] = all(torch.equal(s.model.state_dict()[k], v) for k, v in trained.items())
out["global_steps"] = s.global_steps
renamed = dict(trained)
renamed["model.renamed.weight"] = renamed.pop("model.norm.weight")
out["renamed"] = attempt(server(), renamed)
partial = {k: v for k, v in trained.items() if ".layers.0." not in k}
out["partial"] = attempt(server(), partial)
out["tied"] = tied
print(json.dumps(out))
"""


def test_the_rollout_server_loads_every_weight_or_stops():
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(resolve_model("retrain:tiny"))], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["full"] == "ok" and out["weights_updated"] and out["global_steps"] == 3
    assert "do not match its model" in out["renamed"] and "model.renamed.weight" in out["renamed"]
    assert "model.norm.weight" in out["renamed"]  # the one that did not come
    assert "missing ['model.layers.0." in out["partial"] and "stale" in out["partial"]
