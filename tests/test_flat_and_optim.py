"""Shared speed-ups keep the math: flat parameter buffers, the MLP's direct forward."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgrad.fast import FlatParameters
from pgrad.fast.optim import optimizer_step
from pgrad.optim import make_optimizer
from pgrad.policies import ActorCritic, CategoricalPolicy, mlp

OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)


def _model() -> ActorCritic:
    torch.manual_seed(0)
    return ActorCritic(CategoricalPolicy(OBS, 2), OBS)


def _loss(model: ActorCritic, obs: torch.Tensor) -> torch.Tensor:
    dist, value = model(obs)
    return dist.log_prob(torch.tensor([0, 1, 1, 0])).mean() + (value - 1.0).square().mean()


def test_flat_parameters_step_equals_per_parameter_clip_and_adam():
    obs = torch.randn(4, 3)
    reference, model = _model(), _model()
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.01, eps=1e-5, foreach=False)
    flat = FlatParameters(model)
    flat_optimizer = make_optimizer("adam", [flat.param], lr=0.01, eps=1e-5)
    for _ in range(3):
        optimizer.zero_grad()
        _loss(reference, obs).backward()
        expected_norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.05)
        optimizer.step()
        norm = flat.gradient_step(flat_optimizer, _loss(model, obs), 0.05)
        assert torch.allclose(norm, expected_norm, rtol=1e-5)
        assert expected_norm > 0.05  # the clip was active
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_flat_parameters_reattach_gradients_that_were_set_to_none():
    model = _model()
    flat = FlatParameters(model)
    optimizer = make_optimizer("adam", [flat.param], lr=0.1, eps=1e-5)
    model.zero_grad()  # sets every .grad to None: backward would allocate fresh tensors
    before = flat.param.detach().clone()
    flat.gradient_step(optimizer, _loss(model, torch.randn(4, 3)), None)
    assert not torch.equal(before, flat.param.detach())
    first = next(model.parameters())
    assert first.data_ptr() == flat.param.data_ptr()  # parameters still view the buffer


def test_flat_parameters_keep_state_dict_round_trips():
    model = _model()
    FlatParameters(model)
    clone = copy.deepcopy(_model())
    with torch.no_grad():
        for p in clone.parameters():
            p.add_(1.0)
    model.load_state_dict(clone.state_dict())
    obs = torch.randn(5, 3)
    assert torch.allclose(model.value(obs), clone.value(obs))


def test_mlp_forward_equals_calling_its_layers_in_order():
    for activation in ("tanh", "relu", "elu", "gelu"):
        net = mlp([3, 8, 8, 2], activation)
        x = torch.randn(6, 3)
        expected = x
        for layer in net:
            expected = layer(expected)
        assert torch.equal(net(x), expected)


def _not_called() -> None:
    raise AssertionError("Optimizer.step was called")


@pytest.mark.parametrize(
    ("name", "buffers"),
    [("adam", ("step", "exp_avg", "exp_avg_sq")), ("rmsprop", ("step", "square_avg"))],
)
def test_optimizer_step_is_the_optimizers_step_and_keeps_hooks(name, buffers):
    obs = torch.randn(4, 3)
    models = [_model(), _model()]
    flats = [FlatParameters(m) for m in models]
    optimizers = [make_optimizer(name, [f.param], lr=0.01, eps=1e-5) for f in flats]
    for step in range(5):
        for i, (model, flat, optimizer) in enumerate(zip(models, flats, optimizers, strict=True)):
            flat.gradient(_loss(model, obs * (step + 1)), 0.5)
            if i == 0:
                optimizer.step()
            else:
                optimizer_step(optimizer)
                optimizer.step = _not_called  # from the second step on: the functional form
            for group in optimizer.param_groups:
                group["lr"] = 0.01 / (step + 1)  # a schedule, as set_learning_rate does
    assert torch.equal(flats[0].param, flats[1].param)  # bit for bit: the same kernels
    s0, s1 = (o.state[f.param] for o, f in zip(optimizers, flats, strict=True))
    assert all(torch.equal(s0[k], s1[k]) for k in buffers)
    assert float(s1["step"]) == 5

    del optimizers[1].step
    calls = []
    optimizers[1].register_step_post_hook(lambda *args: calls.append(1))
    flats[1].gradient(_loss(models[1], obs), 0.5)
    optimizer_step(optimizers[1])
    assert calls == [1]  # a registered hook runs: the plain step was taken


def _changed_signature(*args, **kwargs):
    raise TypeError("unexpected keyword argument 'beta1'")  # as a renamed parameter would


def _wrong_rule(params, grads, *args, **kwargs):
    params[0].data.add_(1.0)  # runs, but is not the optimizer's update


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("adam", "signature"),
        ("adam", "rule"),
        ("adam", "missing"),
        ("rmsprop", "signature"),
        ("rmsprop", "rule"),
        ("rmsprop", "missing"),
        ("adam", "no global hook lists"),
        ("rmsprop", "no global hook lists"),
    ],
)
def test_optimizer_step_falls_back_to_step_when_torch_internals_differ(monkeypatch, name, change):
    """On a torch whose functional optimizers or hook lists are not the ones the fast step
    calls (simulated in pgrad's view of torch, so torch's own ``step`` is untouched), every
    step is ``optimizer.step()``'s, bit for bit, and nothing raises."""
    from types import SimpleNamespace

    from pgrad.fast import optim as common

    monkeypatch.setattr(common, "_AGREES", {}, raising=False)
    functional = {"signature": _changed_signature, "rule": _wrong_rule}.get(change)
    if change == "no global hook lists":
        monkeypatch.setattr(common, "torch_optimizer", SimpleNamespace())
    else:  # the module pgrad calls, with ``name`` changed or gone
        fake = SimpleNamespace(**({name: functional} if functional else {}))
        monkeypatch.setattr(common, name, fake)
    obs = torch.randn(4, 3)
    models = [_model(), _model()]
    flats = [FlatParameters(m) for m in models]
    optimizers = [make_optimizer(name, [f.param], lr=0.01, eps=1e-5) for f in flats]
    for step in range(4):
        for i, (model, flat, optimizer) in enumerate(zip(models, flats, optimizers, strict=True)):
            flat.gradient(_loss(model, obs * (step + 1)), 0.5)
            optimizer.step() if i == 0 else optimizer_step(optimizer)
    assert torch.equal(flats[0].param, flats[1].param)
    assert common._AGREES.get(type(optimizers[1]), False) is False
