"""Bias and variance of policy-gradient estimators, measured at a fixed policy.

Every estimator is one episode's gradient estimate

    g = sum_t w_t grad log pi(a_t|s_t),

and differs only in the weights w_t (``estimator_weights``), built with pgrad's own ``returns``
functions. With G_t the discounted reward-to-go, V a critic, delta_t its TD error and A_t^lambda
GAE, the weights are:

| estimator | w_t |
|---|---|
| total return | G_0 (the whole episode's return, at every step) |
| total return - b* | G_0 - b*, b* = E[ |sum_t grad log pi|^2 G_0 ] / E[ |sum_t grad log pi|^2 ] |
| reward-to-go (REINFORCE) | gamma^t G_t |
| reward-to-go - V | gamma^t (G_t - V(s_t)) |
| TD(0) | gamma^t delta_t |
| n-step | gamma^t (G_t^(n) - V(s_t)) |
| GAE(lambda) | gamma^t A_t^lambda |

The gamma^t makes the reward-to-go forms unbiased for J = E[G_0] (dropping it, as most code
does, is itself a bias). b* is the constant baseline of least variance; it and the critic are
estimated from episodes independent of the ones they are applied to, so Monte Carlo estimators
stay unbiased. TD(0), n-step and GAE with lambda < 1 are biased unless V is the true V^pi.

For each estimator, over N episodes: bias = |mean(g) - g_ref| with g_ref the exact gradient
(tabular MDPs) or a high-sample reference (gym envs), the noise floor of that bias
sqrt(tr Cov / N), and variance = tr Cov(g), the expected squared distance of one episode's
estimate from its mean.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from pgrad.lab import tabular
from pgrad.plot import pyplot, save
from pgrad.returns import discounted_returns, gae, nstep_returns
from pgrad.runs import write_json

LAMBDAS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.97, 0.99, 1.0)
NSTEPS = (3, 10)


@dataclass
class Episodes:
    """Steps of whole episodes, concatenated in order (one row per step)."""

    rewards: np.ndarray
    values: np.ndarray  # V(s_t) of the critic under test
    ends: np.ndarray  # bool: the episode ends after this step

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[True], self.ends[:-1]])

    @property
    def index(self) -> np.ndarray:
        """Which episode each step belongs to."""
        return np.cumsum(self.starts) - 1

    def returns(self, gamma: float) -> np.ndarray:
        """G_t, the discounted reward-to-go of every step within its episode."""
        r = torch.as_tensor(self.rewards, dtype=torch.float64)[:, None]
        ends = torch.as_tensor(self.ends)[:, None]
        return discounted_returns(r, ends, torch.zeros_like(ends), gamma)[:, 0].numpy()

    @property
    def time(self) -> np.ndarray:
        """t within the episode."""
        start_rows = np.flatnonzero(self.starts)
        return np.arange(len(self.rewards)) - start_rows[self.index]


def estimator_weights(episodes: Episodes, gamma: float, b_star: float) -> dict[str, np.ndarray]:
    """w_t of every estimator (module docstring) for every step."""
    col = lambda x: torch.as_tensor(x, dtype=torch.float64)[:, None]  # noqa: E731
    r, v = col(episodes.rewards), col(episodes.values)
    ends = torch.as_tensor(episodes.ends)[:, None]
    no = torch.zeros_like(ends)
    v_next = torch.cat([v[1:], torch.zeros(1, 1, dtype=torch.float64)])  # 0 after an end
    G = episodes.returns(gamma)
    discount = gamma ** episodes.time.astype(np.float64)
    g0 = G[episodes.starts][episodes.index]
    weights = {
        "total return": g0,
        "total return - b*": g0 - b_star,
        "reward-to-go": discount * G,
        "reward-to-go - V": discount * (G - episodes.values),
    }
    for n in NSTEPS:
        Gn = nstep_returns(r, v_next, ends, no, gamma, n)[:, 0].numpy()
        weights[f"{n}-step"] = discount * (Gn - episodes.values)
    for lam in LAMBDAS:
        A = gae(r, v, v_next, ends, no, gamma, lam)[:, 0].numpy()
        weights[f"GAE({lam:g})"] = discount * A
    weights["TD(0)"] = weights["GAE(0)"]
    return weights


def per_episode(weights: np.ndarray, scores: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(episodes, dims): sum over each episode's steps of w_t * score_t."""
    out = np.zeros((index[-1] + 1, scores.shape[1]))
    np.add.at(out, index, weights[:, None] * scores)
    return out


def optimal_constant_baseline(episodes: Episodes, scores: np.ndarray, gamma: float) -> float:
    """b* = E[|sum_t score_t|^2 G_0] / E[|sum_t score_t|^2] from these episodes."""
    g0 = estimator_weights(episodes, gamma, 0.0)["total return"][episodes.starts]
    norms = (per_episode(np.ones(len(scores)), scores, episodes.index) ** 2).sum(1)
    return float((norms * g0).sum() / norms.sum())


@dataclass
class Row:
    estimator: str
    bias: float
    noise_floor: float
    variance: float
    variance_vs_reinforce: float
    """tr Cov relative to plain REINFORCE (reward-to-go): < 1 is a reduction."""


def measure(
    gradients: dict[str, np.ndarray], reference: np.ndarray, reference_noise: float = 0.0
) -> list[Row]:
    """Bias, its noise floor and variance of every estimator's per-episode gradients; the noise
    floor sqrt(tr Cov / N + reference_noise^2) is what |bias| measures for an unbiased
    estimator (``reference_noise``: the reference's own standard error, 0 if exact)."""
    rows = []
    base = None
    for name, g in gradients.items():
        mean = g.mean(0)
        variance = float(g.var(0, ddof=1).sum())
        if name == "reward-to-go":
            base = variance
        rows.append(
            Row(name, float(np.linalg.norm(mean - reference)),
                float(np.sqrt(variance / len(g) + reference_noise**2)), variance, np.nan)
        )  # fmt: skip
    for row in rows:
        row.variance_vs_reinforce = row.variance / base if base else np.nan
    return rows


# Tabular MDPs: the exact gradient is the reference.


def fitted_values(mdp: tabular.TabularMDP, ep: tabular.Episodes, gamma: float) -> np.ndarray:
    """V(s) = the mean reward-to-go observed from s (0 where s was never seen): a critic
    fitted by Monte Carlo, inexact by its sampling error."""
    episodes = Episodes(ep.rewards, np.zeros(len(ep.rewards)), ep.ends)
    G = episodes.returns(gamma)
    totals = np.bincount(ep.states, G, mdp.n_states)
    counts = np.bincount(ep.states, minlength=mdp.n_states)
    return np.where(counts > 0, totals / np.maximum(counts, 1), 0.0)


def tabular_gradients(
    mdp: tabular.TabularMDP,
    theta: np.ndarray,
    n: int,
    rng: np.random.Generator,
    values: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-episode gradient estimates of every estimator from ``n`` episodes. The critic is
    ``values`` (S,) if given, else fitted on ``n`` independent episodes (which also give b*)."""
    side = tabular.sample(mdp, theta, n, rng)
    if values is None:
        values = fitted_values(mdp, side, mdp.gamma)
    side_episodes = Episodes(side.rewards, values[side.states], side.ends)
    b_star = optimal_constant_baseline(side_episodes, tabular.scores(mdp, theta, side), mdp.gamma)
    ep = tabular.sample(mdp, theta, n, rng)
    episodes = Episodes(ep.rewards, values[ep.states], ep.ends)
    scores = tabular.scores(mdp, theta, ep)
    weights = estimator_weights(episodes, mdp.gamma, b_star)
    return {k: per_episode(w, scores, episodes.index) for k, w in weights.items()}


def tabular_table(
    mdp: tabular.TabularMDP, theta: np.ndarray, n: int, seed: int
) -> tuple[list[Row], dict]:
    exact = tabular.exact(mdp, theta)
    gradients = tabular_gradients(mdp, theta, n, np.random.default_rng(seed))
    info = {"env": mdp.name, "episodes": n, "J": exact.J, "reference": "exact gradient"}
    return measure(gradients, exact.gradient.ravel()), info


# Gym envs: a trained policy network; the reference is a high-sample unbiased estimate.


def _gym_episodes(model, envs, n: int, seed: int) -> dict[str, torch.Tensor]:
    """``n`` whole episodes (spread over the sub-envs) as flat per-step tensors in episode
    order; an episode cut by a time limit counts as ended (the finite-horizon objective)."""
    from pgrad.rollout import collect_episodes

    per_env = -(-n // envs.num_envs)
    batch = collect_episodes(envs, model, per_env, seed=seed)
    columns = {"obs": [], "actions": [], "rewards": [], "ends": []}
    for i in range(envs.num_envs):
        keep = batch.mask[:, i]
        columns["obs"].append(batch.obs[keep, i])
        columns["actions"].append(batch.actions[keep, i])
        columns["rewards"].append(batch.rewards[keep, i].double())
        columns["ends"].append((batch.terminated | batch.truncated)[keep, i])
    return {k: torch.cat(v) for k, v in columns.items()}


def _critic(model, side: dict[str, torch.Tensor], gamma: float):
    """The run's own critic if it has one, else V fitted by regression on Monte Carlo returns
    of independent episodes."""
    from pgrad.policies import ActorCritic, mlp

    if isinstance(model, ActorCritic):
        return lambda obs: model.value(obs).double()
    episodes = Episodes(side["rewards"].numpy(), np.zeros(len(side["rewards"])),
                        side["ends"].numpy())  # fmt: skip
    G = episodes.returns(gamma)
    net = mlp([side["obs"].shape[1], 64, 64, 1], "tanh")
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    target = torch.as_tensor(G, dtype=torch.float32)
    with torch.enable_grad():  # gym_table samples under no_grad; the fit needs gradients
        for _ in range(500):
            loss = ((net(side["obs"]).squeeze(-1) - target) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return lambda obs: net(obs).squeeze(-1).double()


def _episode_gradients(actor, data, weights: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(episodes, estimators, params): sum_t w_t grad log pi(a_t|s_t) of every episode and
    every row of ``weights`` (estimators, steps), one batched backward pass per episode."""
    params = [p for p in actor.parameters() if p.requires_grad]
    bounds = np.flatnonzero(np.diff(np.r_[-1, index, index[-1] + 1]))
    W = torch.as_tensor(weights, dtype=torch.float32)
    out = []
    for start, stop in itertools.pairwise(bounds):
        log_probs = actor.distribution(data["obs"][start:stop]).log_prob(
            data["actions"][start:stop]
        )
        grads = torch.autograd.grad(
            log_probs, params, grad_outputs=W[:, start:stop], is_grads_batched=True
        )
        out.append(torch.cat([g.reshape(len(W), -1) for g in grads], 1).numpy())
    return np.stack(out).astype(np.float64)


def gym_table(
    env_id: str, run_dir: str | Path, n: int, n_reference: int, seed: int
) -> tuple[list[Row], dict]:
    """The estimators at the policy in ``run_dir`` on ``env_id``, against a reference gradient
    from ``n_reference`` further episodes (reward-to-go - V: unbiased, the lowest-variance
    Monte Carlo form)."""
    from pgrad.agent import load
    from pgrad.envs import load_normalization_state, make_vec_env
    from pgrad.policies import actor_of

    agent = load(run_dir)
    gamma = float(agent.config.get("gamma", 0.99))
    envs = make_vec_env(env_id, 8, normalize_obs=bool(agent.config.get("normalize_obs")))
    load_normalization_state(envs, agent.normalization, frozen=True)
    model, actor = agent.model, actor_of(agent.model)
    with torch.no_grad():
        side = _gym_episodes(model, envs, n, seed)
        critic = _critic(model, side, gamma)
        data = _gym_episodes(model, envs, n, seed + 1)
        reference = _gym_episodes(model, envs, n_reference, seed + 2)
        values = {k: critic(d["obs"]).numpy() for k, d in [("side", side), ("data", data),
                                                            ("reference", reference)]}  # fmt: skip
    envs.close()
    side_ep = Episodes(side["rewards"].numpy(), values["side"], side["ends"].numpy())
    ones = np.ones((1, len(side_ep.rewards)))
    side_scores = _episode_gradients(actor, side, ones, side_ep.index)[:, 0]
    norms = (side_scores**2).sum(1)
    g0 = estimator_weights(side_ep, gamma, 0.0)["total return"][side_ep.starts]
    b_star = float((norms * g0).sum() / norms.sum())

    ref_ep = Episodes(reference["rewards"].numpy(), values["reference"],
                      reference["ends"].numpy())  # fmt: skip
    w_ref = estimator_weights(ref_ep, gamma, b_star)["reward-to-go - V"][None]
    g_refs = _episode_gradients(actor, reference, w_ref, ref_ep.index)[:, 0]
    g_ref = g_refs.mean(0)
    reference_noise = float(np.sqrt(g_refs.var(0, ddof=1).sum() / len(g_refs)))

    episodes = Episodes(data["rewards"].numpy(), values["data"], data["ends"].numpy())
    weights = estimator_weights(episodes, gamma, b_star)
    names = list(weights)
    g = _episode_gradients(actor, data, np.stack([weights[k] for k in names]), episodes.index)
    gradients = {k: g[:, i] for i, k in enumerate(names)}
    lengths = np.bincount(episodes.index)
    info = {
        "env": env_id,
        "episodes": len(lengths),
        "reference": f"mean of {int(ref_ep.index[-1] + 1)} episodes' reward-to-go - V",
        "policy": str(run_dir),
        "mean_discounted_return": float(
            estimator_weights(episodes, gamma, 0.0)["total return"][episodes.starts].mean()
        ),
        "mean_length": float(lengths.mean()),
        "critic": "the run's" if hasattr(model, "value") else "fitted to Monte Carlo returns",
    }
    return measure(gradients, g_ref, reference_noise), info


# Output


def write(out: Path, rows: list[Row], info: dict) -> None:
    """results.json and the bias/variance-versus-lambda plot."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", {**info, "rows": [asdict(r) for r in rows]})
    by_name = {r.estimator: r for r in rows}
    gae_rows = [by_name[f"GAE({lam:g})"] for lam in LAMBDAS]
    fig, (ax1, ax2) = pyplot().subplots(1, 2, figsize=(10, 4))
    ax1.plot(LAMBDAS, [r.variance for r in gae_rows], "o-", label="GAE(lambda)")
    ax2.plot(LAMBDAS, [r.bias for r in gae_rows], "o-", label="GAE(lambda)")
    ax2.plot(LAMBDAS, [r.noise_floor for r in gae_rows], ":", color="grey",
             label="noise floor (bias of an unbiased estimator)")  # fmt: skip
    for name, style in [("reward-to-go", "--"), ("reward-to-go - V", "-."), ("total return", ":")]:
        ax1.axhline(by_name[name].variance, linestyle=style, color="black", alpha=0.6, label=name)
    ax1.set_yscale("log")
    ax1.set_xlabel("lambda")
    ax1.set_ylabel("variance: tr Cov of one episode's gradient")
    ax1.set_title("Variance")
    ax2.set_xlabel("lambda")
    ax2.set_ylabel("bias: |mean estimate - reference gradient|")
    ax2.set_title("Bias")
    fig.suptitle(
        f"Gradient estimators on {info['env']}, {info['episodes']} episodes "
        f"(reference: {info['reference']})"
    )
    save(fig, out / "bias_variance.png", legend_fontsize=8)


def format_table(rows: list[Row]) -> str:
    lines = [
        "| estimator | bias | noise floor | variance (tr Cov) | variance / REINFORCE's |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.estimator} | {r.bias:.4g} | {r.noise_floor:.4g} | {r.variance:.4g} | "
            f"{r.variance_vs_reinforce:.3g} |"
        )
    return "\n".join(lines)
