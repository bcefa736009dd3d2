"""Docs generated from code (docs/config.md, docs/rewards.md): write them, or check they are current."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(output: Path, text: str, command: str, argv: list[str] | None = None) -> int:
    """`--check`: exit status 1 and say so when `output` differs from `text`; else write it."""
    argv = sys.argv[1:] if argv is None else argv
    if "--check" in argv:
        if not output.exists() or output.read_text(encoding="utf-8") != text:
            print(f"{output} is stale: run `{command}`", file=sys.stderr)
            return 1
        return 0
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output}")
    return 0
