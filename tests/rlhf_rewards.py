"""Reward functions for tests/test_rlhf.py, importable as ``rlhf_rewards:NAME``."""

from pgrad.rlhf import task

calls = 0


def nan_after_three_batches(prompt: str, response: str) -> float:
    """The task score for the evaluation before training (4 prompts x 4 samples) and the first
    3 batches of 128 responses, then NaN."""
    global calls
    calls += 1
    return task.score(prompt, response) if calls <= 16 + 3 * 128 else float("nan")


def inverted(prompt: str, response: str) -> float:
    """Minus the hidden task score: a reward the policy can only "win" by losing the task."""
    return -task.score(prompt, response)
