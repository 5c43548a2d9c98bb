"""The KL-regularised optimum on the default task, in closed form, to measure RL against.

For one prompt x, the objective J(pi) = E_pi[score(x, y)] - beta KL(pi || pi_ref) is maximised by

    pi*(y|x) = pi_ref(y|x) exp(score(x, y) / beta) / Z(x),   Z(x) = E_ref[exp(score / beta)],

with J(pi*) = beta log Z(x). The task's score is 0 except on well-formed numbers above the
prompt, so Z(x) = 1 + sum_{y > x} pi_ref(y|x) (exp(score / beta) - 1): a sum over at most 10^4
numbers, each log pi_ref(y + EOS | x) read off one forward pass. Then
E_pi*[score] = sum pi* score and KL(pi* || pi_ref) = E_pi*[score] / beta - log Z.
"""

from __future__ import annotations

import math

import torch

from pgrad.rlhf import task
from pgrad.rlhf.sequences import forward, masked_sum
from pgrad.rlhf.sft import teacher_forced


@torch.no_grad()
def sequence_log_probs(model, tokenizer, prompt: str, texts: list[str], batch: int = 4096):
    """log pi(y + EOS | prompt) for each response text."""
    out = []
    for start in range(0, len(texts), batch):
        part = texts[start : start + batch]
        responses = teacher_forced(tokenizer, [prompt] * len(part), part)
        log_probs, _ = forward(model, responses)
        out.append(masked_sum(log_probs, responses.mask).double())
    return torch.cat(out)


def kl_regularised_optimum(model, tokenizer, prompts: list[str], beta: float) -> dict[str, float]:
    """Mean over ``prompts`` of J(pi*), E_pi*[score] and KL(pi* || pi_ref) (module docstring),
    with ``model`` as pi_ref; beta > 0."""
    objective, score, kl = [], [], []
    for prompt in prompts:
        p = task.parse(prompt.removesuffix(task.SEPARATOR))
        ys = [str(y) for y in range(p + 1, task.MAX_NUMBER + 1)]
        s = torch.tensor([task.score(prompt, y) for y in ys], dtype=torch.float64)
        ref = sequence_log_probs(model, tokenizer, prompt, ys).exp()
        z = 1.0 + float((ref * torch.expm1(s / beta)).sum())
        expected = float((ref * torch.exp(s / beta) * s).sum()) / z
        objective.append(beta * math.log(z))
        score.append(expected)
        kl.append(expected / beta - math.log(z))
    n = len(prompts)
    return {"objective": sum(objective) / n, "score": sum(score) / n, "kl": sum(kl) / n}
