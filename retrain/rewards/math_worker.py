"""A worker process for `math_equivalent`: reads JSON lines {found, reference, timeout}, writes [equal, why].

math-verify bounds its sympy work with signal.alarm, which works only in a process's main thread,
and the Scorer calls rewards from threads; so comparisons run here, in the main thread of a
separate process (started with `python -m retrain.rewards.math_worker`, which re-imports no user
script, unlike multiprocessing's spawn). The parent kills a worker that overruns and starts another.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    from retrain.rewards.answers import verify_math

    print(json.dumps("ready"), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            result = verify_math(request["found"], request["reference"], request["timeout"])
        except Exception as exc:  # sympy raising on odd input: a wrong answer, not a crash
            result = (False, f"math-verify raised {type(exc).__name__}: {str(exc)[:120]}")
        print(json.dumps(list(result)), flush=True)


if __name__ == "__main__":
    main()
