"""Episodes run concurrently through the environment layer: 32 episodes, each making 3 tool calls
that sleep 50 ms (one per turn, then an answer), scored by the Scorer. Prints the wall time
against the serial sum of the tool time (target: under 1/8 of serial), for a sync tool (waits in
a thread) and an async one.

The policy is scripted (no model): this measures the environment layer, not generation.

    python benchmarks/env_concurrency.py [--episodes 32] [--calls 3] [--sleep-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from transformers import AutoTokenizer
from transformers.utils import logging as hf_logging

from retrain.config_models import TrainingConfig
from retrain.core.scoring import Scorer
from retrain.environments import ToolEnvironment
from retrain.environments.episode import EpisodeLimits, HFChatTokens, run_episodes
from retrain.environments.tools import tool_from_function
from retrain.models import resolve_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--sleep-ms", type=float, default=50)
    options = parser.parse_args()
    seconds = options.sleep_ms / 1000

    def wait(label: str) -> str:
        """Wait, then answer."""
        time.sleep(seconds)
        return f"{label}: ok"

    async def wait_async(label: str) -> str:
        """Wait, then answer."""
        await asyncio.sleep(seconds)
        return f"{label}: ok"

    hf_logging.set_verbosity_error()
    tokens = HFChatTokens(AutoTokenizer.from_pretrained(resolve_model("retrain:tiny")))
    eos = tokens.tokenizer.eos_token_id
    encode = lambda text: tokens.tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]  # noqa: E731
    scorer = Scorer.from_config(TrainingConfig.from_data({
        "model_to_train": "retrain:tiny", "example_prompts": ["p"],
        "verifiers": [{"rule": "mentions", "params": {"words": ["done"]}}],
    }))
    rows = [{"prompt": [{"role": "user", "content": f"task {i}"}]} for i in range(options.episodes)]

    print(f"{options.episodes} episodes x {options.calls} tool calls of {options.sleep_ms:g} ms, scored")
    print(f"{'tool':8s}{'wall (s)':>10s}{'serial (s)':>12s}{'wall/serial':>13s}")
    call = encode('<tool_call>{"name": "wait", "arguments": {"label": "x"}}</tool_call>')
    done = encode("done")

    async def policy(token_ids: list[int], budget: int) -> list[int]:
        calls_so_far = tokens.tokenizer.decode(token_ids).count("<|im_start|>tool")
        return call if calls_so_far < options.calls else done

    for name, function in (("sync", wait), ("async", wait_async)):
        tool = tool_from_function(function, name="wait")

        async def episodes_and_scores():
            rollouts = await run_episodes(lambda: ToolEnvironment([tool], 5.0), rows, policy, tokens,  # noqa: B023
                                          EpisodeLimits(4096, options.calls + 1))
            return rollouts, await scorer.score(rollouts)

        started = time.perf_counter()
        rollouts, breakdowns = asyncio.run(episodes_and_scores())
        wall = time.perf_counter() - started
        assert all(r.episode.tool_calls == options.calls and r.episode.tool_errors == 0 for r in rollouts)
        assert all(b.gate_passed for b in breakdowns)
        serial = options.episodes * options.calls * seconds
        print(f"{name:8s}{wall:>10.3f}{serial:>12.3f}{wall / serial:>13.3f}   (target < 0.125)")


if __name__ == "__main__":
    main()
