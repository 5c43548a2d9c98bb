"""A reward model learned from preference pairs (Bradley-Terry).

Model: r_phi(x, y) = w . h_last + b, the scalar head on the last hidden state of a transformers
backbone (initialised from the SFT policy, as is usual) at the response's last real token (EOS).

Data: pairs (x, y_w, y_l) where a hidden scoring rule prefers y_w; both responses are sampled
from the SFT policy for the same prompt, ties dropped.

Loss (Bradley-Terry): P(y_w > y_l) = sigmoid(r(x, y_w) - r(x, y_l)),

    L(phi) = -mean log sigmoid(r(x, y_w) - r(x, y_l)).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pgrad.rlhf import model as lm
from pgrad.rlhf.sequences import Responses, generate, run
from pgrad.rlhf.sft import fit, teacher_forced


@dataclass
class RewardConfig:
    """Settings of ``pgrad rlhf reward``."""

    pairs: int = 6000
    """Training pairs (ties in the hidden score are dropped, so slightly fewer)."""
    test_pairs: int = 1000
    """Held-out pairs for the accuracy against the hidden rule (from prompts never trained on)."""
    steps: int = 1500
    batch_size: int = 64
    learning_rate: float = 5e-4
    max_new_tokens: int = 6
    seed: int = 0
    log_every: int = 100

    def check(self) -> None:
        from pgrad.config import at_least, positive

        for key in ("pairs", "test_pairs", "steps", "batch_size", "max_new_tokens", "log_every"):
            at_least(self, key, 1)
        at_least(self, "seed", 0)
        positive(self, "learning_rate")


class RewardModel(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(lm.hidden_size(backbone), 1)

    def forward(self, batch: Responses) -> torch.Tensor:
        """(B,) r(x, y) read at each response's last real token."""
        out = run(self.backbone, batch, hidden=True)
        last = batch.prompt_length + batch.last
        hidden = out.hidden_states[-1][torch.arange(len(last), device=last.device), last]
        return self.head(hidden).squeeze(-1)

    def save(self, path: Path, tokenizer) -> None:
        lm.save(self.backbone, tokenizer, path / "backbone")
        torch.save(self.head.state_dict(), path / "head.pt")

    @classmethod
    def load(cls, path: Path) -> tuple[RewardModel, object]:
        backbone, tokenizer = lm.load(path / "backbone")
        model = cls(backbone)
        model.head.load_state_dict(torch.load(path / "head.pt", weights_only=True))
        return model.eval(), tokenizer


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """-mean log sigmoid(r_w - r_l) (module docstring)."""
    return -F.logsigmoid(chosen - rejected).mean()


def preference_pairs(
    policy, tokenizer, prompts: list[str], score: Callable[[str, str], float], max_new_tokens: int
) -> list[tuple[str, str, str]]:
    """(prompt, chosen, rejected) from two samples of ``policy`` per prompt, judged by
    ``score`` (the hidden rule); ties dropped."""
    first = generate(policy, tokenizer, prompts, max_new_tokens)
    second = generate(policy, tokenizer, prompts, max_new_tokens)
    pairs = []
    for p, a, b in zip(prompts, first.texts, second.texts, strict=True):
        sa, sb = score(p, a), score(p, b)
        if sa != sb:
            pairs.append((p, a, b) if sa > sb else (p, b, a))
    return pairs


def _batch(tokenizer, pairs) -> tuple[Responses, Responses]:
    prompts, chosen, rejected = zip(*pairs, strict=True)
    return teacher_forced(tokenizer, prompts, chosen), teacher_forced(tokenizer, prompts, rejected)


@torch.no_grad()
def accuracy(model: RewardModel, tokenizer, pairs) -> float:
    """Fraction of pairs where r(x, y_w) > r(x, y_l): agreement with the hidden rule."""
    model.eval()
    chosen, rejected = _batch(tokenizer, pairs)
    return float((model(chosen) > model(rejected)).float().mean())


def train(policy, tokenizer, train_pairs, config: RewardConfig, log=None) -> RewardModel:
    """A reward model initialised from ``policy``'s weights, fitted to ``train_pairs``."""
    model = RewardModel(copy.deepcopy(policy))

    def loss(rows: np.ndarray) -> torch.Tensor:
        chosen, rejected = _batch(tokenizer, [train_pairs[i] for i in rows])
        return bradley_terry_loss(model(chosen), model(rejected))

    model.train()
    fit(model, loss, len(train_pairs), config, log)
    return model.eval()
