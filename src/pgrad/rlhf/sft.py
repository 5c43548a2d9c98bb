"""Supervised fine-tuning: maximum likelihood of the corpus responses given their prompts,

    L(theta) = -mean over response tokens of log pi_theta(y_t | x, y_<t),

with the EOS token included (the policy must learn to stop) and prompt tokens excluded. It uses
the same ``sequences.forward`` as the RL losses: SFT is the policy gradient with Psi_t = 1 on
the demonstrator's actions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from pgrad import device
from pgrad.rlhf.sequences import Responses, encode_prompts, forward, masked_mean


@dataclass
class SFTConfig:
    """Settings of ``pgrad rlhf sft`` (the default task's corpus and model size)."""

    steps: int = 1500
    """Gradient steps."""
    batch_size: int = 64
    learning_rate: float = 1e-3
    corpus_size: int = 20_000
    """(prompt, response) pairs generated from the task."""
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    seed: int = 0
    log_every: int = 100

    def check(self) -> None:
        from pgrad.config import ConfigError, at_least, positive

        for key in (
            "steps",
            "batch_size",
            "corpus_size",
            "n_layer",
            "n_embd",
            "n_head",
            "log_every",
        ):
            at_least(self, key, 1)
        at_least(self, "seed", 0)
        positive(self, "learning_rate")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})"
            )


def teacher_forced(tokenizer, prompts: list[str], texts: list[str]) -> Responses:
    """Given responses laid out like ``generate``'s output: prompt, response tokens, EOS, pad."""
    encoded = encode_prompts(tokenizer, prompts)
    eos = tokenizer.eos_token_id
    ids = [[*tokenizer(t, add_special_tokens=False).input_ids, eos] for t in texts]
    width = max(len(i) for i in ids)
    tokens = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.bool)
    for row, seq in enumerate(ids):
        tokens[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = True
    return Responses(
        prompts=list(prompts),
        texts=list(texts),
        input_ids=torch.cat([encoded["input_ids"], tokens], dim=1),
        attention_mask=torch.cat([encoded["attention_mask"], mask.long()], dim=1),
        prompt_length=encoded["input_ids"].shape[1],
        mask=mask,
        ended=torch.ones(len(ids), dtype=torch.bool),
    )


def train(model, tokenizer, corpus: list[tuple[str, str]], config: SFTConfig, log=None) -> float:
    """Fit ``model`` to ``corpus``; returns the last logged loss (nats per token)."""

    def loss(rows: np.ndarray) -> torch.Tensor:
        batch = teacher_forced(tokenizer, *zip(*(corpus[i] for i in rows), strict=True))
        log_probs, _ = forward(model, batch.to(device.of(model)))
        return -masked_mean(log_probs, batch.mask)

    model.train()  # dropout on for SFT
    last = fit(model, loss, len(corpus), config, log)
    model.eval()
    return last


def fit(model, loss: Callable[[np.ndarray], torch.Tensor], n: int, config, log=None) -> float:
    """AdamW for ``config.steps`` steps, each on ``loss(rows)`` of ``config.batch_size`` example
    indices drawn with replacement from ``range(n)`` (seeded by ``config.seed``). Every
    ``config.log_every`` steps and at the end, ``log(step, {"loss": mean since the last})``;
    returns the last such mean. Shared by SFT and the reward model."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    rng = np.random.default_rng(config.seed)
    running, last = [], float("nan")
    for step in range(1, config.steps + 1):
        value = loss(rng.integers(0, n, config.batch_size))
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        running.append(value.item())
        if step % config.log_every == 0 or step == config.steps:
            last, running = float(np.mean(running)), []
            if log is not None:
                log(step, {"loss": last})
    return last
