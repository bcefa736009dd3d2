"""retrain's evaluator against plain batched `generate()`: the same model, prompts, batches and budget.

retrain's generation (`retrain.evaluation.generate`: left padding, seeding, cutting at the end token,
decoding) and the whole evaluation (`retrain.evaluation.evaluate`: that, plus loading and the Scorer)
are timed against a bare loop of `model.generate()` over the same padded batches, alternating
A/B so that machine noise hits both. Greedy, so the three produce the same tokens (checked).

    python benchmarks/eval_throughput.py [--model retrain:tiny] [--prompts 64] [--batch 16] [--tokens 32]

Prints tokens per second of each and the ratios (target: retrain's generation within 10% of plain
generate(), i.e. a ratio >= 0.90).
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="retrain:tiny")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from retrain.core.config import TrainingConfig
    from retrain.evaluation import generate, load_model
    from retrain.models import resolve_model

    prompts = [f"Write a short sentence about the number {i}." for i in range(args.prompts)]
    config = TrainingConfig.from_data({
        "model": args.model, "example_prompts": prompts,
        "rewards": {"functions": [{"function": "length", "params": {"max_words": 50}}]},
        "evaluation": {"prompts": prompts, "batch_size": args.batch, "max_completion_tokens": args.tokens},
    })
    assert config.evaluation is not None
    model, tokenizer, _ = load_model(resolve_model(args.model))
    ids = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True,
                                         return_dict=False) for p in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def plain() -> list[list[int]]:
        out = []
        for start in range(0, len(ids), args.batch):
            batch = ids[start: start + args.batch]
            width = max(len(x) for x in batch)
            input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in batch])
            attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in batch])
            with torch.no_grad():
                sequences = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=args.tokens,
                                           do_sample=False, temperature=None, top_p=None, top_k=None,
                                           eos_token_id=tokenizer.eos_token_id, pad_token_id=pad)
            out += sequences[:, width:].tolist()
        return out

    def retrain_generate() -> list[list[int]]:
        return [c.ids for c in generate(model, tokenizer, ids, config.evaluation, args.tokens, seed=0)]

    timings: dict[str, list[float]] = {"plain generate()": [], "retrain generate": []}
    tokens: dict[str, int] = {}
    plain()  # warm-up
    for _ in range(args.repeats):
        for name, fn in (("plain generate()", plain), ("retrain generate", retrain_generate)):
            started = time.perf_counter()
            produced = fn()
            timings[name].append(time.perf_counter() - started)
            eos = tokenizer.eos_token_id
            tokens[name] = sum(len(s[: s.index(eos) + 1]) if eos in s else len(s) for s in produced)
    ours = [c.ids for c in generate(model, tokenizer, ids, config.evaluation, args.tokens, seed=0)]
    reference = [s[: s.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in s else s for s in plain()]
    same = ours == [[t for t in s if t != pad] if pad != tokenizer.eos_token_id else s for s in reference]
    print(f"model {args.model}, {args.prompts} prompts in batches of {args.batch}, up to {args.tokens} tokens, "
          f"greedy; {args.repeats} alternating repeats; same tokens: {same}")
    rates = {}
    for name, seconds in timings.items():
        median = statistics.median(seconds)
        rates[name] = tokens[name] / median
        print(f"  {name:18s} median {median:7.3f}s  {rates[name]:9.1f} tokens/s")
    ratio = rates["retrain generate"] / rates["plain generate()"]
    print(f"retrain generate / plain generate(): {ratio:.3f} (target >= 0.90)")


if __name__ == "__main__":
    main()
