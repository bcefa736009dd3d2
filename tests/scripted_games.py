"""A scripted player for TextArena's Guess The Number, shared by the TRL and verl episode tests: it stands in for
a model (the tiny random test model never plays), deterministic from the conversation so far, so the same game
gets the same moves on both backends. It guesses 1, 2, 3, ... in order: games whose number is at most the
turns allowed are won, the others run out of turns, so a batch holds wins and losses."""

from __future__ import annotations

import json


def guess_in_order(conversation: str) -> str:
    """The next move, from the decoded conversation (chat-templated): one more than the guesses so far."""
    guesses = conversation.count("<|im_start|>assistant") - 1  # the last one is the turn being generated
    return f"My guess is [{guesses + 1}]"


def walk_to_goal(conversation: str) -> str:
    """The next move in examples/openenv_grid.py's GridWalk, from the last board in the decoded conversation: along x
    towards G first, then along y, as JSON. Deterministic, so the same walk gets the same moves on both backends."""
    board = conversation.rsplit("board:\n", 1)[1].split("\nmessage:", 1)[0].splitlines()
    cells = {char: (x, y) for y, row in enumerate(board) for x, char in enumerate(row)}
    (sx, sy), (gx, gy) = cells["S"], cells["G"]
    direction = "right" if gx > sx else "left" if gx < sx else "down" if gy > sy else "up"
    return json.dumps({"direction": direction})
