"""Environments on verl: a custom agent loop (verl's `AgentLoopBase`) that runs each row's episode
in retrain's environment layer, the same episode code the TRL bridge uses.

verl builds one `RetrainAgentLoop` per trajectory inside its agent-loop workers (Ray processes),
from the `agent_loops.yaml` the launcher writes into the run directory (launch.py: AGENT_NAME)
(`rollout.agent.agent_loop_config_path`, with `default_agent_loop: retrain_env`). Generation goes
through verl's own server manager (vLLM on GPUs, the `hf` server on a CPU), turn by turn, on the
token ids exactly as generated; the environment's tokens are appended once and get
`response_mask` 0, so verl trains on the model's tokens only. The episode's messages travel to
the reward function in `extra_fields` (verl merges them into `extra_info`), so rewards read the
model's words apart from the tools'.

What episodes in one worker process share (the tools, MCP servers) is built once per process,
in the worker's event loop, and stopped when the process exits.
"""

from __future__ import annotations

import asyncio
import atexit
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput

from retrain.backends.verl.data import columns_from_extra_info
from retrain.core.config import TrainingConfig
from retrain.environments import EnvironmentFactory
from retrain.environments.episode import EPISODE_FIELD, EpisodeLimits, HFChatTokens, Turn, episode_record, run_episode

_factories: dict[str, EnvironmentFactory] = {}
_factory_lock: asyncio.Lock | None = None


async def _factory(config_path: str) -> tuple[TrainingConfig, EnvironmentFactory]:
    global _factory_lock
    _factory_lock = _factory_lock or asyncio.Lock()
    async with _factory_lock:
        config = TrainingConfig.from_yaml(config_path)
        if config_path not in _factories:
            factory = EnvironmentFactory(config.environment)
            await factory.start()
            loop = asyncio.get_running_loop()
            atexit.register(lambda: loop.is_running() or loop.run_until_complete(factory.close()))
            _factories[config_path] = factory
        return config, _factories[config_path]


class RetrainAgentLoop(AgentLoopBase):
    def __init__(self, *args: Any, config_path: str, **kwargs: Any):
        kwargs.pop("name", None)
        super().__init__(*args, **kwargs)
        self.config_path = config_path
        self.tokens: HFChatTokens | None = None  # built with the config's chat template arguments on first run
        self.response_length: int = self.rollout_config.response_length

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        config, factory = await _factory(self.config_path)
        if self.tokens is None:
            self.tokens = HFChatTokens(self.tokenizer, config.data.chat_template_kwargs)
        row = {**columns_from_extra_info(kwargs.get("extra_info") or {}), "prompt": list(kwargs["raw_prompt"])}
        request_id = uuid4().hex
        extra_fields: dict[str, Any] = {}
        metrics = {"generate_sequences": 0.0}
        want_logprobs = bool(sampling_params.get("logprobs"))

        async def generate(token_ids: list[int], budget: int) -> Turn:
            loop = asyncio.get_running_loop()
            started = loop.time()
            output = await self.server_manager.generate(
                request_id=request_id, prompt_ids=token_ids, sampling_params={**sampling_params, "max_tokens": budget}
            )
            metrics["generate_sequences"] += loop.time() - started
            fields = output.extra_fields or {}
            if not extra_fields:
                extra_fields.update(fields)  # min/max_global_steps: verl tags the trajectory with them
            elif fields.get("max_global_steps") is not None:
                extra_fields["max_global_steps"] = fields["max_global_steps"]
            return Turn(list(output.token_ids), list(output.log_probs) if output.log_probs else None)

        limits = EpisodeLimits(self.response_length, factory.max_turns)
        rollout = await run_episode(factory.new(), row, generate, self.tokens, limits, rollout_id=request_id)
        # The tokens and mask verl trains on travel with the record, to the samples in the run dir.
        extra_fields[EPISODE_FIELD] = {**episode_record(rollout), "token_ids": rollout.completion_token_ids,
                                       "trainable_mask": rollout.trainable_mask}
        extra_fields.update({"turn_scores": [], "tool_rewards": []})
        length = self.response_length
        return AgentLoopOutput(
            prompt_ids=rollout.prompt_token_ids,
            response_ids=rollout.completion_token_ids[:length],
            response_mask=rollout.trainable_mask[:length],
            response_logprobs=rollout.completion_logprobs[:length] if want_logprobs else None,
            num_turns=len(rollout.completion_messages) + 1,
            metrics=metrics,
            extra_fields=extra_fields,
        )
