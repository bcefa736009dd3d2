"""Run episodes token-exactly: the model's tokens are kept as generated, the environment's
messages are tokenized once each and appended, and a mask says which is which.

    prompt_ids      = chat template of the opening messages (with the tools offered)
    completion_ids  = [model turn 1][env reply 1][model turn 2] ...
    trainable_mask  = [1 ... 1     ][0 ...   0 ][1 ...     1] ...

Nothing is ever decoded and re-encoded: the text of a model turn is decoded only to be read
(tool calls, rewards). Episodes run concurrently; `BatchedGenerator` gathers their generation
requests into batches for backends that generate in-process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from retrain.core.environment import Environment, StepResult
from retrain.core.rollout import EpisodeStats, Message, Rollout, ToolCall
from retrain.environments.parsing import tools_system_prompt

# The field an episode's record travels in through a backend to the reward function.
EPISODE_FIELD = "retrain_episode"


@dataclass
class Turn:
    """A model turn as a sampler returns it: the new token ids, and their log-probs if it gives them."""

    token_ids: list[int]
    logprobs: list[float] | None = None


# (token ids so far, max new tokens) -> the new ids (or a Turn, with log-probs)
Generate = Callable[[list[int], int], Awaitable["list[int] | Turn"]]


class ChatTokens(Protocol):
    eos_token_ids: set[int]

    def encode_prompt(self, messages: list[Message], tools: list[dict[str, Any]]) -> list[int]: ...

    def encode_continuation(self, messages: list[Message]) -> list[int]: ...

    def decode(self, token_ids: list[int]) -> str: ...


class HFChatTokens:
    """ChatTokens from a Hugging Face tokenizer and its chat template."""

    def __init__(self, tokenizer: Any, chat_template_kwargs: dict[str, Any] | None = None):
        self.tokenizer = tokenizer
        self.chat_template_kwargs = dict(chat_template_kwargs or {})  # data.chat_template_kwargs
        self.eos_token_ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        template = tokenizer.chat_template or ""
        self.template_takes_tools = "tools" in template
        # What the template writes after an assistant turn's end-of-turn token (e.g. "\n" in ChatML):
        # the model stops at the token, so this text starts every environment reply.
        probe = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]
        rendered = tokenizer.apply_chat_template(probe, tokenize=False)
        eos = tokenizer.eos_token or ""
        self._after_turn = rendered[rendered.rfind(eos) + len(eos):] if eos and eos in rendered else ""
        self._probe = rendered

    def _render(self, messages: list[Message], **kwargs: Any) -> str:
        return self.tokenizer.apply_chat_template([m.to_dict() for m in messages], tokenize=False,
                                                  **self.chat_template_kwargs, **kwargs)

    def encode_prompt(self, messages: list[Message], tools: list[dict[str, Any]]) -> list[int]:
        if tools and self.template_takes_tools:
            text = self.tokenizer.apply_chat_template(
                [m.to_dict() for m in messages], tools=tools, tokenize=False, add_generation_prompt=True,
                **self.chat_template_kwargs,
            )
        else:
            if tools:  # offer the tools in the system message, Hermes-style
                offer = tools_system_prompt(tools)
                if messages and messages[0].role == "system":
                    messages = [Message("system", f"{messages[0].content}\n\n{offer}"), *messages[1:]]
                else:
                    messages = [Message("system", offer), *messages]
            text = self._render(messages, add_generation_prompt=True)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_continuation(self, messages: list[Message]) -> list[int]:
        probe = [Message("user", "u"), Message("assistant", "a")]
        head = self._render(probe)
        full = self._render(probe + messages, add_generation_prompt=True)
        if not full.startswith(head):
            raise ValueError("the chat template renders earlier turns differently once more follow; "
                             "it cannot be used for multi-turn episodes")
        text = self._after_turn + full[len(head):]
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, token_ids: list[int]) -> str:
        return str(self.tokenizer.decode(token_ids, skip_special_tokens=True))


@dataclass
class EpisodeLimits:
    max_tokens: int  # model and environment tokens after the prompt
    max_turns: int  # model turns


async def run_episode(
    environment: Environment, row: dict[str, Any], generate: Generate, tokens: ChatTokens, limits: EpisodeLimits,
    rollout_id: str = "",
) -> Rollout:
    """One episode, start to close (also on failure)."""
    try:
        opening = await environment.reset(row)
        schemas = [tool.schema() for tool in getattr(environment, "tools", [])]
        prompt_ids = tokens.encode_prompt(opening, schemas)
        completion_ids: list[int] = []
        mask: list[int] = []
        logprobs: list[float] = []
        sampler_logprobs = False
        messages: list[Message] = []
        stats = EpisodeStats()
        while True:
            budget = limits.max_tokens - len(completion_ids)
            turn = await generate(prompt_ids + completion_ids, budget) if budget > 0 else Turn([])
            turn = turn if isinstance(turn, Turn) else Turn(list(turn))
            new = turn.token_ids[:budget]
            completion_ids += new
            mask += [1] * len(new)
            sampler_logprobs = sampler_logprobs or turn.logprobs is not None
            given = list(turn.logprobs or [])[: len(new)]
            logprobs += given + [0.0] * (len(new) - len(given))
            action = Message("assistant", tokens.decode(new))
            messages.append(action)
            stats.turns += 1
            if not new or new[-1] not in tokens.eos_token_ids:
                stats.truncated = True  # cut by the token budget mid-turn: nothing more to say
                break
            result = await environment.step(action)
            _count(stats, result)
            if result.done:
                break
            if stats.turns >= limits.max_turns:
                stats.truncated = True  # still calling tools when the turns ran out
                break
            reply = tokens.encode_continuation(result.observation)
            messages += result.observation
            room = limits.max_tokens - len(completion_ids)
            if len(reply) >= room:  # no room left for the model to answer
                reply = reply[:room]
                stats.truncated = True
            completion_ids += reply
            mask += [0] * len(reply)
            logprobs += [0.0] * len(reply)
            if stats.truncated:
                break
    finally:
        await environment.close()
    return Rollout(
        prompt_messages=opening, completion_messages=messages, prompt_token_ids=prompt_ids,
        completion_token_ids=completion_ids, trainable_mask=mask,
        completion_logprobs=logprobs if sampler_logprobs else [], metadata=dict(row), rollout_id=rollout_id,
        episode=stats,
    )


def _count(stats: EpisodeStats, result: StepResult) -> None:
    if result.reward is not None:
        reward = float(result.reward)
        if reward != reward or reward in (float("inf"), float("-inf")):
            raise ValueError(f"the environment returned a reward of {result.reward}; return a finite number or None")
        stats.reward = reward if stats.reward is None else stats.reward + reward
    if result.info.get("episode_error"):
        stats.error = str(result.info["episode_error"])
    for outcome in result.info.get("tool_outcomes", []):
        stats.tool_calls += 1
        stats.calls_per_tool[outcome.name] = stats.calls_per_tool.get(outcome.name, 0) + 1
        if outcome.error:
            stats.tool_errors += 1
            stats.errors_per_kind[outcome.error] = stats.errors_per_kind.get(outcome.error, 0) + 1


class BatchedGenerator:
    """Turns concurrent single-sequence `generate` calls into batched calls of `generate_batch`
    (a blocking function, run in a thread): requests that arrive while a batch runs form the next."""

    def __init__(
        self, generate_batch: Callable[[list[list[int]], list[int]], list[list[int]]], gather_seconds: float = 0.01
    ):
        self.generate_batch = generate_batch
        self.gather_seconds = gather_seconds  # how long a batch waits for more requests (tools finishing)
        self._pending: list[tuple[list[int], int, asyncio.Future[list[int]]]] = []
        self._worker: asyncio.Task[None] | None = None
        self.batch_sizes: list[int] = []

    async def __call__(self, token_ids: list[int], max_new_tokens: int) -> list[int]:
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._pending.append((token_ids, max_new_tokens, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(self.gather_seconds)  # let episodes whose tools just finished join this batch
            batch, self._pending = self._pending, []
            self.batch_sizes.append(len(batch))
            try:
                outputs = await asyncio.to_thread(self.generate_batch, [b[0] for b in batch], [b[1] for b in batch])
            except BaseException as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), output in zip(batch, outputs, strict=True):
                if not future.done():
                    future.set_result(output)


async def run_episodes(
    new_environment: Callable[[], Environment], rows: Sequence[dict[str, Any]], generate: Generate,
    tokens: ChatTokens, limits: EpisodeLimits,
) -> list[Rollout]:
    """All rows' episodes concurrently (tools of one episode run while another generates)."""
    return list(await asyncio.gather(*(
        run_episode(new_environment(), row, generate, tokens, limits, rollout_id=f"episode{index}")
        for index, row in enumerate(rows)
    )))


def episode_record(rollout: Rollout) -> dict[str, Any]:
    """An episode's opening, messages and stats as plain data, to travel through a backend to the rewards."""
    return {"prompt": [m.to_dict() for m in rollout.prompt_messages],
            "messages": [m.to_dict() for m in rollout.completion_messages],
            "episode": asdict(rollout.episode) if rollout.episode else None}


def opening_from_record(record: dict[str, Any], fallback: list[Message]) -> list[Message]:
    """The messages the episode opened with (what `reset` returned: a game's board, not only the row's
    prompt), or `fallback` (the row's prompt) for a record without them."""
    if not isinstance(record.get("prompt"), list):
        return fallback
    return [Message(m["role"], m.get("content") or "") for m in record["prompt"]]


def completion_from_record(record: dict[str, Any]) -> tuple[list[Message], EpisodeStats | None]:
    """The episode's messages (the model's turns with their tool calls, and the tool replies)."""
    messages = [
        Message(m["role"], m.get("content") or "",
                [ToolCall(c["name"], c["arguments"], c.get("id")) for c in m.get("tool_calls") or []])
        for m in record["messages"]
    ]
    episode = EpisodeStats(**record["episode"]) if record.get("episode") else None
    return messages, episode
