"""RLHF's expected gradients, exactly: on an LM small enough to enumerate every response, the
expectation of the gradient of the loss ``rl.Trainer`` builds (weights pi(y), float64) equals the
gradient of the objective its docs name."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from pgrad import losses
from pgrad.config import ConfigError
from pgrad.rlhf import advantages, pipeline, rl
from pgrad.rlhf.sequences import Responses, forward, masked_sum

VOCAB, T = 3, 2  # every response: T tokens from VOCAB (no EOS), so 9 responses, 81 pairs
BOS = 0


class TinyLM(nn.Module):
    """A causal LM over VOCAB tokens, h_i = tanh(sum_{j <= i} E[x_j] + P[i]), logits W h_i + c
    (float64), with ``banned`` tokens' logits set to -inf."""

    def __init__(self, seed: int, width: int = 4, banned: tuple[int, ...] = ()):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.config = SimpleNamespace(hidden_size=width)  # for PPO's value head
        self.embed = nn.Parameter(torch.randn(VOCAB, width, generator=gen, dtype=torch.float64))
        self.position = nn.Parameter(torch.randn(T + 1, width, generator=gen, dtype=torch.float64))
        self.head = nn.Parameter(torch.randn(VOCAB, width, generator=gen, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(VOCAB, generator=gen, dtype=torch.float64))
        self.banned = list(banned)

    def forward(self, input_ids, attention_mask, position_ids, output_hidden_states=False):
        x = self.embed[input_ids] * attention_mask[..., None]
        h = torch.tanh(x.cumsum(1) + self.position[position_ids])
        logits = h @ self.head.T + self.bias
        logits[..., self.banned] = -math.inf
        return SimpleNamespace(logits=logits, hidden_states=(h,))


SEQUENCES = list(itertools.product(range(VOCAB), repeat=T))
SCORES = torch.randn(len(SEQUENCES), generator=torch.Generator().manual_seed(7)).tolist()


def responses(rows: list[int]) -> Responses:
    """The responses SEQUENCES[rows] to the one-token prompt BOS, laid out as ``generate``'s."""
    tokens = torch.tensor([SEQUENCES[i] for i in rows])
    n = len(rows)
    return Responses(
        prompts=["p"] * n,
        texts=[str(i) for i in rows],  # the reward reads the response's index
        input_ids=torch.cat([torch.full((n, 1), BOS), tokens], dim=1),
        attention_mask=torch.ones((n, 1 + T), dtype=torch.long),
        prompt_length=1,
        mask=torch.ones((n, T), dtype=torch.bool),
        ended=torch.ones(n, dtype=torch.bool),
    )


def trainer(algo: str, near: bool = False, scores: bool = False, **keys) -> rl.Trainer:
    """A Trainer on TinyLM, its reference another TinyLM (or, ``near``, the policy perturbed by
    N(0, 0.05^2)); the reward is SCORES (``scores``) or 0."""
    config = pipeline.build_config(algo, [{"samples_per_prompt": 2, **keys}])

    def reward(r: Responses) -> list[float]:
        return [SCORES[int(i)] if scores else 0.0 for i in r.texts]

    out = rl.Trainer(algo, TinyLM(seed=0), None, reward, config)
    if near:
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in out.reference.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    else:
        out.reference = TinyLM(seed=1).requires_grad_(False)
    if out.value_head is not None:
        out.value_head.double()
    return out


def flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


def expected_gradient(t: rl.Trainer, batch_size: int, rewards=None) -> torch.Tensor:
    """E[grad L] over batches of ``batch_size`` i.i.d. responses from pi_theta, by enumeration:
    for each tuple, the batch ``Trainer.score`` makes, Psi_t from ``advantage_estimates`` (or
    ``psi`` of ``rewards(batch)``), the loss ``Trainer.loss`` builds, weighted by prod pi(y_i).
    REINFORCE's running baseline is the same before every tuple."""
    params = list(t.policy.parameters())
    total = torch.zeros(sum(p.numel() for p in params), dtype=torch.float64)
    baseline = t.baseline
    for rows in itertools.product(range(len(SEQUENCES)), repeat=batch_size):
        batch = t.score(responses(list(rows)))
        t.baseline = baseline
        if rewards is None:
            psi, targets = t.advantage_estimates(batch)
        else:
            psi, targets = t.psi(batch, rewards(batch)), None
        loss, _ = t.loss(batch, psi, targets)
        weight = masked_sum(batch.log_probs, batch.responses.mask).sum().exp()
        total += weight * flat(torch.autograd.grad(loss, params))
    t.baseline = baseline
    return total


def distributions(model: nn.Module) -> torch.Tensor:
    """(9, T, VOCAB) log pi(.|s_t) at every state of every response, straight from the model."""
    ids = responses(list(range(len(SEQUENCES)))).input_ids
    positions = torch.arange(1 + T).expand_as(ids)
    return model(ids, torch.ones_like(ids), positions).logits[:, :-1].log_softmax(-1)


def sequence_log_probs(model: nn.Module) -> torch.Tensor:
    """(9,) log pi(y) of every response."""
    actions = torch.tensor(SEQUENCES)[..., None]
    return distributions(model).gather(-1, actions).squeeze(-1).sum(-1)


def gradient(t: rl.Trainer, objective: torch.Tensor) -> torch.Tensor:
    return flat(torch.autograd.grad(objective, list(t.policy.parameters()), retain_graph=True))


def sequence_kl(t: rl.Trainer) -> torch.Tensor:
    """KL(pi_theta || pi_ref) over whole responses, sum_y pi(y) log(pi(y) / pi_ref(y))."""
    log_pi, log_ref = sequence_log_probs(t.policy), sequence_log_probs(t.reference)
    return (log_pi.exp() * (log_pi - log_ref)).sum()


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


# --- item 1: the KL penalty in the reward, and the KL loss term ------------------------------


@pytest.mark.parametrize("near", [False, True], ids=["far", "near"])
@pytest.mark.parametrize("algo", ["reinforce", "rloo"])
def test_the_k1_reward_penalty_descends_the_sequence_kl_exactly(algo, near):
    """Scores 0, r_t = -beta k1_t: E[grad L] = -(1/T) grad(-beta KL(pi || pi_ref)) (L is a
    mean over T tokens per response), exactly."""
    beta = 0.5
    t = trainer(algo, near, beta=beta)
    t.baseline = 0.3  # REINFORCE: any baseline independent of the samples
    k = 1 if algo == "reinforce" else 2
    exact = beta / T * gradient(t, sequence_kl(t))
    assert exact.norm() > 1e-4
    torch.testing.assert_close(expected_gradient(t, k), exact, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("near", [False, True], ids=["far", "near"])
def test_a_k3_reward_penalty_as_kl_estimator_k3_gave_does_not(near):
    """What ``kl_estimator: k3`` (removed) did: r_t = -beta k3_t. The score-function gradient
    drops d k3_t / d theta, whose expectation is beta E_ref[grad log pi] != 0, so the expected
    step is not the KL's gradient: its cosine with it is -0.88 far from pi_ref and -0.35 near
    it here (the review's LM: 0.09 and -0.68), against 1.000000 for k1."""
    beta = 0.5
    t = trainer("reinforce", near, beta=beta)
    t.baseline = 0.0

    def k3_rewards(batch: rl.Batch) -> torch.Tensor:
        kl = losses.kl_estimate(batch.log_probs - batch.ref_log_probs, "k3")
        return advantages.token_rewards(batch.scores, kl, batch.responses.mask, beta)

    exact = beta / T * gradient(t, sequence_kl(t))
    k1 = expected_gradient(t, 1, t.rewards)
    k3 = expected_gradient(t, 1, k3_rewards)
    torch.testing.assert_close(k1, exact, rtol=1e-6, atol=1e-12)
    assert cosine(k3, exact) < 0.5, cosine(k3, exact)
    assert (k3 - exact).norm() > 0.5 * exact.norm()


def test_kl_estimator_k1_still_loads_and_k2_k3_are_a_one_line_error():
    assert pipeline.build_config("rloo", [{"kl_estimator": "k1"}]).kl_loss_coef == 0.0
    for estimator in ("k2", "k3"):
        with pytest.raises(ConfigError, match=r"kl_estimator=k[23] was removed") as caught:
            pipeline.build_config("rloo", [{"kl_estimator": estimator}])
        assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="kl_loss_coef must be >= 0"):
        pipeline.build_config("rloo", [{"kl_loss_coef": -1}])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("clip_range", -0.2, "clip_range must be > 0, got -0.2"),
     ("clip_range", 0.0, "clip_range must be > 0, got 0.0"),
     ("clip_range_value", -1.0, "clip_range_value must be > 0, got -1.0"),
     ("value_coef", -1.0, "value_coef must be >= 0, got -1.0")],
)  # fmt: skip
def test_clip_ranges_and_the_value_weight_out_of_range_are_a_one_line_error(key, value, message):
    """A negative clip range pins the ratio (clamp(1.2, 0.8) is 0.8): the surrogate would be
    silently wrong; a negative value weight ascends the value error."""
    with pytest.raises(ConfigError, match=message):
        pipeline.build_config("ppo", [{key: value}])
    assert pipeline.build_config("ppo", [{"clip_range_value": None}]).clip_range_value is None


@pytest.mark.parametrize("near", [False, True], ids=["far", "near"])
@pytest.mark.parametrize("algo", rl.ALGOS)
def test_the_kl_loss_term_descends_the_reverse_kl_at_fixed_states(algo, near):
    """beta 0, scores 0, kl_loss_coef c: E[grad L] = (c/T) grad sum_t E_{s_t ~ pi_old}[
    KL(pi_ref(.|s_t) || pi_theta(.|s_t))], states weighted by pi_old (held fixed) - and not
    the gradient of the forward KL at those states, nor of the sequence KL."""
    c = 0.3
    t = trainer(algo, near, beta=0.0, kl_loss_coef=c)
    t.baseline = 0.0
    k = 2 if algo in ("rloo", "grpo") else 1
    log_pi, log_ref = distributions(t.policy), distributions(t.reference)
    p_old = sequence_log_probs(t.policy).exp().detach()  # weights each response's states
    reverse = (log_ref.exp() * (log_ref - log_pi)).sum(-1).sum(-1)
    forward_kl = (log_pi.exp() * (log_pi - log_ref)).sum(-1).sum(-1)
    exact = c / T * gradient(t, (p_old * reverse).sum())
    got = expected_gradient(t, k)
    torch.testing.assert_close(got, exact, rtol=1e-6, atol=1e-12)
    assert exact.norm() > 1e-4
    other = c / T * gradient(t, (p_old * forward_kl).sum())
    assert (other - exact).norm() > 0.05 * exact.norm()
    assert (c / T * gradient(t, sequence_kl(t)) - exact).norm() > 0.05 * exact.norm()
    # The logged term is the k3 value, an estimate of the forward KL per token.
    batch = t.score(responses([4, 7]))
    _, terms = t.loss(batch, *t.advantage_estimates(batch))
    k3 = losses.kl_estimate(batch.log_probs - batch.ref_log_probs, "k3").mean()
    assert float(terms["kl_loss"]) == pytest.approx(float(k3))


@pytest.mark.parametrize("algo", ["reinforce", "rloo"])
def test_with_per_response_aggregation_the_kl_loss_term_is_summed_per_response(algo):
    """``aggregation: response`` sums the policy loss over each response's T tokens; the KL
    term is summed the same way, so its expected gradient is c grad sum_t E[KL_reverse], T
    times the token mean's (which weighed it 1/T against the policy loss)."""
    c = 0.3
    t = trainer(algo, beta=0.0, kl_loss_coef=c, aggregation="response")
    t.baseline = 0.0
    log_pi, log_ref = distributions(t.policy), distributions(t.reference)
    p_old = sequence_log_probs(t.policy).exp().detach()
    reverse = (log_ref.exp() * (log_ref - log_pi)).sum(-1).sum(-1)
    exact = c * gradient(t, (p_old * reverse).sum())
    got = expected_gradient(t, 2 if algo == "rloo" else 1)
    torch.testing.assert_close(got, exact, rtol=1e-6, atol=1e-12)
    assert exact.norm() > 1e-4


def test_the_kl_loss_term_is_off_by_default():
    t = trainer("ppo")
    batch = t.score(responses([1, 5]))
    _, terms = t.loss(batch, *t.advantage_estimates(batch))
    assert "kl_loss" not in terms and t.config.kl_loss_coef == 0.0


# --- item 2: REINFORCE's first batch ---------------------------------------------------------


@pytest.mark.parametrize("near", [False, True], ids=["far", "near"])
def test_reinforce_first_batch_gradient_is_the_exact_policy_gradient(near):
    """The baseline of the first batch does not depend on its samples, so for B = 2 the expected
    gradient is -(1/T) grad J, J = E[score] - beta KL(pi || pi_ref); with the batch's own mean
    G_0 as the baseline it was (1 - 1/B) of that, half."""
    beta = 0.1
    t = trainer("reinforce", near, scores=True, beta=beta)
    assert t.baseline is None
    log_pi = sequence_log_probs(t.policy)
    objective = (log_pi.exp() * torch.tensor(SCORES, dtype=torch.float64)).sum()
    exact = -1 / T * gradient(t, objective - beta * sequence_kl(t))
    torch.testing.assert_close(expected_gradient(t, 2), exact, rtol=1e-6, atol=1e-12)
    # After the batch, b is its mean G_0 (then the running mean of later batches).
    batch = t.score(responses([2, 6]))
    t.psi(batch, t.rewards(batch))
    g0 = advantages.reward_to_go(t.rewards(batch), batch.responses.mask)[:, 0]
    assert t.baseline == pytest.approx(float(g0.mean()))


# --- item 4: masked tokens -------------------------------------------------------------------


def test_forward_is_finite_when_the_model_rules_tokens_out():
    """A logit of -inf (pi = 0) adds 0 log 0 = 0 to the entropy; the allowed tokens' log-probs
    are those of the renormalised distribution; positions after the response read 0."""
    banned = 2
    model = TinyLM(seed=0, banned=(banned,))
    r = responses([0, 4, 1])  # (0, 0), (1, 1), (0, 1): no banned token
    r.mask[2, 1] = False  # a response that ended after one token, padded ...
    r.input_ids[2, 2] = banned  # ... with a token the model rules out
    log_probs, entropy = forward(model, r)
    assert torch.isfinite(log_probs).all() and torch.isfinite(entropy).all()
    positions = torch.arange(1 + T).expand_as(r.input_ids)
    logits = model(r.input_ids, r.attention_mask, positions).logits[:, :-1, :banned]
    allowed = logits.log_softmax(-1)  # the distribution over the tokens not ruled out
    expected = allowed.gather(-1, r.input_ids[:, 1:, None].clamp(max=banned - 1)).squeeze(-1)
    torch.testing.assert_close(log_probs[r.mask], expected[r.mask])
    assert log_probs[2, 1] == 0.0
    torch.testing.assert_close(entropy, -(allowed.exp() * allowed).sum(-1))
    loss = -(log_probs[r.mask].mean() + entropy.mean())
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)


# --- GRPO (issue 18): group-normalised advantages, per-response or constant aggregation ------


def test_group_baseline_by_hand():
    g0 = torch.tensor([1.0, 2.0, 3.0, 6.0, 5.0, 5.0, 5.0, 5.0])  # two prompts, k = 4
    mean, std = advantages.group_baseline(g0, 4, scale=True)
    assert mean.tolist() == [3.0] * 4 + [5.0] * 4
    sample_std = math.sqrt((4 + 1 + 0 + 9) / 3)  # TRL's (and torch's) unbiased std
    torch.testing.assert_close(std, torch.tensor([sample_std + 1e-4] * 4 + [1e-4] * 4))
    mean, std = advantages.group_baseline(g0, 4, scale=False)  # Dr. GRPO
    assert mean.tolist() == [3.0] * 4 + [5.0] * 4 and std.tolist() == [1.0] * 8


def test_loss_aggregation_by_hand():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[True, False, False], [True, True, True]])
    assert advantages.aggregate(per_token, mask, "token").item() == pytest.approx(16 / 4)
    assert advantages.aggregate(per_token, mask, "response").item() == pytest.approx((1 + 15) / 2)
    assert advantages.aggregate(per_token, mask, "sequence").item() == pytest.approx((1 + 5) / 2)
    assert advantages.aggregate(per_token, mask, "constant", 3).item() == pytest.approx(16 / 6)


@pytest.mark.parametrize("aggregation", ["token", "response"])
def test_rloo_expected_gradient_is_the_policy_gradient_per_token_or_per_response(aggregation):
    """RLOO, k = 2, no KL: Psi_i = R_i - R_other on every token, and y_other is independent of
    y_i, so E[grad L] = -grad J exactly, J = sum_y pi(y) R(y), with ``response`` (each response's
    summed log-prob, the sequence-level estimator) and -grad J / T with ``token`` (every
    response here has T tokens)."""
    t = trainer("rloo", scores=True, beta=0.0, aggregation=aggregation)
    log_pi = sequence_log_probs(t.policy)
    exact = -gradient(t, (log_pi.exp() * torch.tensor(SCORES, dtype=log_pi.dtype)).sum())
    exact = exact / (T if aggregation == "token" else 1)
    assert exact.norm() > 1e-3
    torch.testing.assert_close(expected_gradient(t, 2), exact, rtol=1e-6, atol=1e-12)


def test_aggregation_is_for_reinforce_and_rloo():
    assert (
        pipeline.build_config("reinforce", [{"aggregation": "response"}]).aggregation == "response"
    )
    for algo in ("ppo", "grpo"):
        with pytest.raises(ConfigError, match="aggregation 'response' is for reinforce and rloo"):
            pipeline.build_config(algo, [{"aggregation": "response"}])


def test_dr_grpo_expected_gradient_is_the_policy_gradient_shrunk_by_the_group():
    """Dr. GRPO, k = 2, no KL terms: Psi_i = R_i - (R_1 + R_2) / 2 on every token, loss summed
    over tokens / (2 T). Then E[grad L] = -(1 - 1/k) (k / (2 T)) grad J = -grad J / (2 T),
    J = sum_y pi(y) R(y): exactly, by enumeration."""
    t = trainer("grpo", scores=True, beta=0.0, loss_type="dr_grpo", max_new_tokens=T)
    log_pi = sequence_log_probs(t.policy)
    exact = -gradient(t, (log_pi.exp() * torch.tensor(SCORES, dtype=log_pi.dtype)).sum()) / (2 * T)
    assert exact.norm() > 1e-3
    torch.testing.assert_close(expected_gradient(t, 2), exact, rtol=1e-6, atol=1e-12)


def test_grpo_expected_gradient_is_a_policy_gradient_on_the_groups_scaled_reward():
    """GRPO, k = 2: (R_1 - mean) / (std + eps) = (d / 2) / (|d| / sqrt 2 + eps), d = R_1 - R_2,
    so GRPO ascends J_u = sum_y pi(y) u(y), u(y) = E_{y' ~ pi}[(d / 2) / (|d| / sqrt 2 + eps)],
    with u held fixed: a rank-like reward, not R. Averaged per response (T tokens each) and over
    the k = 2 responses: E[grad L] = -grad J_u / T."""
    t = trainer("grpo", scores=True, beta=0.0)
    log_pi = sequence_log_probs(t.policy)
    r = torch.tensor(SCORES, dtype=log_pi.dtype)
    d = r[:, None] - r[None, :]
    u = ((d / 2) / (d.abs() / math.sqrt(2) + 1e-4) * log_pi.exp().detach()[None, :]).sum(-1)
    exact = -gradient(t, (log_pi.exp() * u).sum()) / T
    plain = -gradient(t, (log_pi.exp() * r).sum())
    assert cosine(exact, plain) < 0.999  # not the policy gradient of R itself
    torch.testing.assert_close(expected_gradient(t, 2), exact, rtol=1e-6, atol=1e-12)


def test_grpo_needs_a_group():
    with pytest.raises(ConfigError, match="grpo needs samples_per_prompt >= 2"):
        pipeline.build_config("grpo", [{"samples_per_prompt": 1}])
