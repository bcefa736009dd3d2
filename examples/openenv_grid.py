"""A small OpenEnv environment for examples/openenv_grid.yaml: walk to the goal on a grid.

Written against OpenEnv's own interfaces (an `Environment` with an `Action` and an `Observation`), so it also
runs as an OpenEnv server (`openenv.serve: true`, or `uvicorn` with OpenEnv's `create_app`) and with any other
OpenEnv client. It scores itself: each move costs 0.05, reaching the goal gives 1.0 and ends the episode; running
out of moves ends it too. The seed picks the start and the goal, so a row's seed is the same walk everywhere.
"""

from __future__ import annotations

import random
from typing import Any, Literal

from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import Action, Observation, State

STEPS = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}


class Move(Action):
    direction: Literal["up", "down", "left", "right"]


class GridObservation(Observation):
    board: str  # the grid as text: S you, G the goal, . empty
    message: str


class GridWalk(Environment[Move, GridObservation, State]):
    SUPPORTS_CONCURRENT_SESSIONS = True  # no shared state: each session has its own instance

    def __init__(self, size: int = 4, max_moves: int = 8, move_cost: float = 0.05):
        super().__init__()
        self.size, self.max_moves, self.move_cost = size, max_moves, move_cost
        self._state = State()
        self.position = self.goal = (0, 0)

    def _board(self) -> str:
        rows = []
        for y in range(self.size):
            rows.append("".join("S" if (x, y) == self.position else "G" if (x, y) == self.goal else "."
                                for x in range(self.size)))
        return "\n".join(rows)

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> GridObservation:
        rng = random.Random(seed)
        cells = [(x, y) for x in range(self.size) for y in range(self.size)]
        self.position, self.goal = rng.sample(cells, 2)
        self._state = State(episode_id=episode_id, step_count=0)
        return GridObservation(board=self._board(), message=f"You have {self.max_moves} moves.")

    def step(self, action: Move, timeout_s: float | None = None, **kwargs: Any) -> GridObservation:
        self._state.step_count += 1
        dx, dy = STEPS[action.direction]
        x, y = self.position[0] + dx, self.position[1] + dy
        bumped = not (0 <= x < self.size and 0 <= y < self.size)
        if not bumped:
            self.position = (x, y)
        left = self.max_moves - self._state.step_count
        if self.position == self.goal:
            return GridObservation(board=self._board(), message="You reached the goal.", done=True,
                                   reward=1.0 - self.move_cost)
        message = ("You bumped into the wall. " if bumped else "") + f"{left} moves left."
        return GridObservation(board=self._board(), message=message, done=left <= 0, reward=-self.move_cost)

    @property
    def state(self) -> State:
        return self._state
