"""TextArena games as environments (`environment.type: textarena`): single-player text games that score
themselves, their reward passed to the Scorer (the `environment_reward` built-in).

    environment:
      type: textarena
      game: GuessTheNumber-v0          # any single-player game registered in TextArena
      game_options: {max_turns: 10}     # keyword arguments of the game
      max_turns: 10

Each dataset row starts one game; its `seed` column seeds the game (rows without one play seed 0), so the same
row is the same game on every backend. The row's prompt (instructions of yours, e.g. how to answer) comes
first, then the game's opening (its rules, its board), in one user message; each
model turn is the game's action as the model wrote it (the game reads what it needs, e.g. `[7]`); the game's
messages since the model's last turn are the next user message. When the game ends, its reward for player 0
is the episode's environment reward.

The game runs without TextArena's wrappers: they would re-send the whole history every turn
(LLMObservationWrapper) and rewrite the model's text into brackets (ActionFormattingWrapper); retrain keeps the
conversation as messages and passes the model's words unchanged.

Offline: games without word lists run (GuessTheNumber, TowerOfHanoi, Minesweeper, FrozenLake, Mastermind, ...);
word games download NLTK data on first use and fail on a machine without network; two-player games need an
opponent and are refused at validation.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from retrain.core.environment import StepResult, opening_messages
from retrain.core.rollout import Message

_PLAYER = 0


def _game_class(game: str) -> tuple[type, dict[str, Any]]:
    try:
        from textarena.envs.registration import ENV_REGISTRY
    except ImportError:
        raise ValueError("environment.type 'textarena' needs TextArena: pip install 'retrain[textarena]'") from None
    if game not in ENV_REGISTRY:
        import difflib

        close = difflib.get_close_matches(game, list(ENV_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"TextArena has no game '{game}'{hint}")
    spec = ENV_REGISTRY[game]
    entry = spec.entry_point
    if isinstance(entry, str):
        module, name = entry.split(":")
        try:
            entry = getattr(importlib.import_module(module), name)
        except Exception as exc:  # some games' modules need a newer Python or packages TextArena does not pin
            raise ValueError(f"TextArena game '{game}' cannot be loaded here ({type(exc).__name__}: {exc})") from None
    return entry, dict(spec.kwargs)


def check_game(game: str, options: dict[str, Any]) -> None:
    """A clear error now, not in the first episode: the game exists, takes the options, and starts with one
    player offline."""
    cls, defaults = _game_class(game)
    try:
        env = cls(**{**defaults, **options})
    except TypeError as exc:
        raise ValueError(f"TextArena game '{game}' does not take these game_options: {exc}") from None
    try:
        env.reset(num_players=1, seed=0)
    except Exception as exc:
        raise ValueError(
            f"TextArena game '{game}' cannot start a single-player game here ({type(exc).__name__}: {exc}); retrain "
            "runs single-player games, and word games need NLTK data that they download on first use"
        ) from None


def _render(observations: list[Any]) -> str:
    """The game's messages since the model's last turn, without the echo of that turn."""
    lines = [str(message).strip() for sender, message, *_ in observations if sender != _PLAYER]
    return "\n".join(line for line in lines if line)


class TextArenaEnvironment:
    """One TextArena game per episode (see the module docstring)."""

    def __init__(self, game: str, game_options: dict[str, Any] | None = None):
        self.game = game
        self.options = dict(game_options or {})
        self.env: Any = None

    async def reset(self, row: dict[str, Any]) -> list[Message]:
        cls, defaults = _game_class(self.game)
        self.env = cls(**{**defaults, **self.options})
        seed = row.get("seed", 0)
        await asyncio.to_thread(self.env.reset, num_players=1, seed=int(seed))
        _, observations = self.env.get_observation()
        game = _render(observations)
        messages = opening_messages(row) if row.get("prompt") else []
        if messages and messages[-1].role == "user":  # the row's instructions, then the game's opening
            messages[-1] = Message("user", f"{messages[-1].content}\n\n{game}" if messages[-1].content else game)
        else:
            messages.append(Message("user", game))
        return messages

    async def step(self, action: Message) -> StepResult:
        done, _info = await asyncio.to_thread(self.env.step, action.content)
        if done:
            rewards, game_info = self.env.close()
            reward = float((rewards or {}).get(_PLAYER, 0.0))
            reason = str(((game_info or {}).get(_PLAYER) or {}).get("reason", ""))
            return StepResult([], done=True, reward=reward, info={"game_end": reason})
        _, observations = self.env.get_observation()
        return StepResult([Message("user", _render(observations) or "(the game waits for your move)")], done=False)

    async def close(self) -> None:
        self.env = None
