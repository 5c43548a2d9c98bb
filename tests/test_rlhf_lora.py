"""LoRA through PEFT: one copy of the base weights, the reference is exactly the base model,
and a LoRA run trains and saves a plain (merged) model."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("peft")

from pgrad.rlhf import model as lm
from pgrad.rlhf import pipeline, rl, task
from pgrad.rlhf.sequences import forward


def _reward(r):
    return [task.score(p, x) for p, x in zip(r.prompts, r.texts, strict=True)]


def test_lora_keeps_one_copy_of_the_base_weights_and_its_reference_is_the_base(sft_dir):
    torch.manual_seed(0)
    policy, tokenizer = lm.load(sft_dir / "model")
    base, _ = lm.load(sft_dir / "model")  # an independent copy, never trained
    base.eval()
    n_base = sum(p.numel() for p in base.parameters())
    config = pipeline.build_config("rloo", [{"lora_r": 4, "learning_rate": 1e-2}])
    t = rl.Trainer("rloo", policy, tokenizer, _reward, config)

    # One copy: the reference is the policy itself (adapters off), whose frozen weights are the
    # base model's, counted once; only the adapters train.
    assert t.reference.policy[0] is t.policy and list(t.reference.parameters()) == []
    frozen = [p for p in t.policy.parameters() if not p.requires_grad]
    trained = [(n, p) for n, p in t.policy.named_parameters() if p.requires_grad]
    assert sum(p.numel() for p in frozen) == n_base
    assert trained and all("lora_" in n for n, _ in trained)
    assert {id(p) for p in t.params} == {id(p) for _, p in trained}
    full = rl.Trainer("rloo", lm.load(sft_dir / "model")[0], tokenizer, _reward,
                      pipeline.build_config("rloo", []))  # fmt: skip
    assert sum(p.numel() for p in full.reference.parameters()) == n_base  # the copy LoRA saves

    for seed in range(3):  # train the adapters a little
        t.update(t.collect(task.prompts(8, seed=seed)))
    responses = t.collect(task.prompts(8, seed=99)).responses
    with torch.no_grad():
        ref, _ = forward(t.reference, responses)
        expected, _ = forward(base, responses)
        moved, _ = forward(t.policy, responses)
    mask = responses.mask
    torch.testing.assert_close(ref[mask], expected[mask], rtol=0, atol=1e-6)
    assert (moved[mask] - expected[mask]).abs().max() > 1e-3  # the adapters did change pi


def test_a_lora_run_trains_and_saves_a_plain_model(tmp_path, sft_dir):
    config = pipeline.build_config(
        "rloo",
        [{"lora_r": 8, "learning_rate": 1e-2, "iterations": 30, "seed": 0, "eval_prompts": 32,
          "eval_samples": 4, "eval_every": 0}],
    )  # fmt: skip
    path = pipeline.run_rl("rloo", config, tmp_path / "lora", model=sft_dir / "model")
    summary = json.loads((path / "summary.json").read_text())
    # measured: 0.10 -> 0.53 (learning rate 1e-2; at 1e-3 LoRA moves ~5x slower)
    assert summary["after"]["reward"] > summary["before"]["reward"] + 0.2, summary
    saved, _ = lm.load(path / "model")
    assert not any("lora_" in n for n, _ in saved.named_parameters())


@pytest.mark.parametrize("lora_r", [0, 4])
def test_gradient_checkpointing_keeps_less_for_backward_and_changes_no_gradient(sft_dir, lora_r):
    """With ``gradient_checkpointing`` the blocks' activations are recomputed in the backward
    pass instead of kept: the bytes autograd saves during the loss's forward pass fall several
    times over (counted by a saved-tensors hook), dropout stays off, and the gradient is the
    same as without."""
    grads, saved = [], []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        policy, tokenizer = lm.load(sft_dir / "model")
        config = pipeline.build_config(
            "ppo", [{"lora_r": lora_r, "gradient_checkpointing": checkpointing}]
        )
        t = rl.Trainer("ppo", policy, tokenizer, _reward, config)
        torch.manual_seed(1)
        batch = t.collect(task.prompts(8, seed=5))
        psi, targets = t.advantage_estimates(batch)
        kept = [0]

        def pack(x, kept=kept):
            kept[0] += x.numel() * x.element_size()
            return x

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            loss, _ = t.loss(batch, psi, targets)
        loss.backward()
        saved.append(kept[0])
        grads.append(torch.cat([p.grad.flatten() for p in t.params]))
        assert not any(m.training for m in t.policy.modules() if type(m).__name__ == "Dropout")
    assert saved[1] < saved[0] / 3, saved
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)
