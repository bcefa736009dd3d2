"""A verl plugin for the environment tests: the `scripted` rollout, retrain's CPU `hf` server with
its model replaced by a scripted policy. It stands in for a model that has learned to call the
calculator (the tiny random test model cannot), plays Guess The Number or walks the OpenEnv grid
(tests/scripted_games.py);
verl's trainer, agent-loop workers, server manager and retrain's agent loop and tools are all real.
Loaded through VERL_USE_EXTERNAL_MODULES.
"""

from __future__ import annotations

import ray
from verl.workers.rollout.base import _ROLLOUT_REGISTRY
from verl.workers.rollout.replica import RolloutReplicaRegistry, TokenOutput

from retrain.backends.verl.cpu import HFReplica, HFServer

CALL = '<tool_call>{"name": "calculator", "arguments": {"expression": "%s"}}</tool_call>'


class ScriptedServer(HFServer):
    def __init__(self, config, model_config):
        super().__init__(config, model_config)
        from verl.utils.config import omega_conf_to_dataclass

        self.tokenizer = omega_conf_to_dataclass(model_config).tokenizer

    async def generate(self, request_id, prompt_ids, sampling_params, **kw):
        text = self.tokenizer.decode(prompt_ids)
        if "Guess The Number" in text:  # TextArena's game (tests/scripted_games.py), else the calculator
            from tests.scripted_games import guess_in_order

            said = guess_in_order(text)
        elif "board:\n" in text:  # examples/openenv_grid.py's walk (tests/scripted_games.py)
            from tests.scripted_games import walk_to_goal

            said = walk_to_goal(text)
        elif "<|im_start|>tool" in text:
            said = "The answer is " + text.rsplit("<|im_start|>tool\n", 1)[1].split("<|im_end|>")[0]
        else:
            said = CALL % text.rsplit("What is ", 1)[1].split("?")[0]
        ids = self.tokenizer(said, add_special_tokens=False)["input_ids"] + [self.eos]
        return TokenOutput(token_ids=ids[: int(sampling_params.get("max_tokens") or len(ids))], log_probs=None,
                           stop_reason="completed", extra_fields={"global_steps": self.global_steps})


class ScriptedReplica(HFReplica):
    async def launch_servers(self):
        name = f"hf_server_{self.replica_rank}_0"  # the name retrain's HFServerAdapter sends weights to
        server = ray.remote(ScriptedServer).options(name=name, num_cpus=0, max_concurrency=64).remote(
            self.config, self.model_config)
        self.servers = [server]
        self._server_handle = server
        self._server_address = name


RolloutReplicaRegistry.register("scripted", lambda: ScriptedReplica)
_ROLLOUT_REGISTRY[("scripted", "async")] = "retrain.backends.verl.cpu.HFServerAdapter"
