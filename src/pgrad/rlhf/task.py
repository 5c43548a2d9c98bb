"""The default RLHF task, "say a bigger number", with its hidden scoring rule.

A prompt is a number of 1-3 digits followed by ``>``; a response is a number followed by the
end-of-sequence token. The hidden score of a response is

    score(p, y) = (y - p) / (9999 - p)   if y is a well-formed number with p < y <= 9999,
                  0                      otherwise.

Why this task: it runs on CPU in seconds with a 14-token vocabulary; the supervised corpus
(random numbers of 1-4 digits, whatever the prompt) gives an SFT policy that writes well-formed
answers of varied length and value but ignores the preference, so its mean score is low (~0.13)
and RL has room to raise it; many responses are acceptable, but the score has one maximiser,
``9999``, so a policy optimised with no KL penalty collapses onto it for every prompt (the
diversity of its responses drops to ~1 distinct answer), the mode collapse that the KL penalty
to the SFT model prevents. The rule is simple enough to check a learned reward model against.
"""

from __future__ import annotations

import numpy as np

SEPARATOR = ">"
MAX_DIGITS = 4
MAX_NUMBER = 10**MAX_DIGITS - 1


def _number(rng: np.random.Generator, digits: int) -> int:
    low = 0 if digits == 1 else 10 ** (digits - 1)
    return int(rng.integers(low, 10**digits))


def prompts(n: int, seed: int) -> list[str]:
    """``n`` prompts: numbers of 1, 2 or 3 digits (equally likely), then ``>``."""
    rng = np.random.default_rng(seed)
    return [f"{_number(rng, int(rng.integers(1, 4)))}{SEPARATOR}" for _ in range(n)]


def sft_corpus(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` (prompt, response) pairs; the response is a random number of 1-4 digits."""
    rng = np.random.default_rng(seed)
    return [
        (
            f"{_number(rng, int(rng.integers(1, 4)))}{SEPARATOR}",
            str(_number(rng, int(rng.integers(1, 5)))),
        )
        for _ in range(n)
    ]


def parse(text: str) -> int | None:
    """The number a response states, or None if it is not a well-formed number <= 9999."""
    text = text.strip()
    if not text.isdigit() or len(text) > MAX_DIGITS or (len(text) > 1 and text[0] == "0"):
        return None
    return int(text)


def score(prompt: str, response: str) -> float:
    """The hidden scoring rule (module docstring); usable as ``--reward pgrad.rlhf.task:score``."""
    p, y = parse(prompt.removesuffix(SEPARATOR)), parse(response)
    if p is None or y is None or y <= p:
        return 0.0
    return (y - p) / (MAX_NUMBER - p)
