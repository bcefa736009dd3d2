"""Generate examples/data/math_word_problems.jsonl: small arithmetic word problems with their answers.

    python examples/make_math_problems.py [--count 200] [--seed 0]

Deterministic for a seed, so the committed file can be regenerated exactly. Numbers are small
(one or two digits) so that a 135M model gets some right from the start: GRPO needs groups where
some completions are right and some wrong.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Emma", "Finn", "Grace", "Hugo", "Iris", "Jack", "Kira", "Leo"]
THINGS = ["apples", "marbles", "stickers", "books", "pencils", "cookies", "shells", "coins", "cards", "stamps"]

TEMPLATES = [
    ("{n} has {a} {t}. {m} gives {n} {b} more. How many {t} does {n} have now?", lambda a, b: a + b),
    ("{n} had {a} {t} and gave {b} of them to {m}. How many {t} does {n} have left?", lambda a, b: a - b),
    ("{n} buys {a} bags with {b} {t} in each bag. How many {t} does {n} buy in all?", lambda a, b: a * b),
    ("{n} shares {p} {t} equally among {b} friends. How many {t} does each friend get?", lambda a, b: a),
    ("{n} has {a} {t} and {m} has {b} more than {n}. How many {t} does {m} have?", lambda a, b: a + b),
    ("There are {a} {t} on a shelf. {n} takes {b}, then puts back {c}. How many {t} are on the shelf?",
     None),
]


def make(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        template, answer_of = TEMPLATES[index % len(TEMPLATES)]
        n, m = rng.sample(NAMES, 2)
        t = rng.choice(THINGS)
        a, b = rng.randint(2, 20), rng.randint(2, 12)
        if "gave {b}" in template or "takes {b}" in template:
            a = max(a, b + 1)
        c = rng.randint(1, b)
        p = a * b
        question = template.format(n=n, m=m, t=t, a=a, b=b, c=c, p=p)
        answer = a - b + c if answer_of is None else answer_of(a, b)
        rows.append({"prompt": question, "answer": str(answer)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "data" / "math_word_problems.jsonl")
    args = parser.parse_args()
    rows = make(args.count, args.seed)
    args.output.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    print(f"wrote {len(rows)} problems to {args.output}")


if __name__ == "__main__":
    main()
