"""The faster 2×2 max-pooling of PGD's gradient passes: PyTorch's values and gradients, hence PGD's iterates."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import robustlens.engine.attacks as attacks_module
from robustlens.engine.attack_gradients import _with_fast_pooling, gradient_model
from robustlens.engine.attacks import pgd
from robustlens.engine.checks import FiniteOutputs, NonFiniteOutputError, finite_outputs
from robustlens.engine.pooling import is_pool_2x2, max_pool_2x2

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def standard(zoo_model):
    return zoo_model("fashion-mnist/standard")


def tied_activations(seed: int, channels: int) -> torch.Tensor:
    """Post-ReLU-like activations full of ties: zeros, plateaus, and small integers (many equal pairs,
    across rows, columns and diagonals of a window)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-2, 3, (5, channels, 12, 10), generator=g).float().relu_()
    x[:, :, :4] = 0.5  # plateaus
    x[0, 0, 4:6, 0:2] = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # a diagonal tie
    x[0, 0, 4:6, 2:4] = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # the anti-diagonal: PyTorch keeps the upper one
    x[1] = torch.randn(channels, 12, 10, generator=g)  # and no ties at all
    return x


# 3 channels: the channels-last kernel's scalar tail; 32 and 35: its vector lanes (and a tail after them)
@pytest.mark.parametrize("channels", [3, 32, 35])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_values_and_gradients_are_pytorchs(seed, channels):
    x = tied_activations(seed, channels)
    grad_out = torch.randn(5, channels, 6, 5, generator=torch.Generator().manual_seed(seed + 10))
    ours_in, theirs_in = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours, theirs = max_pool_2x2(ours_in), F.max_pool2d(theirs_in, 2)
    assert torch.equal(ours, theirs)
    (ours_grad,) = torch.autograd.grad(ours, ours_in, grad_out)
    (theirs_grad,) = torch.autograd.grad(theirs, theirs_in, grad_out)
    assert torch.equal(ours_grad, theirs_grad)  # every window's gradient on PyTorch's pixel
    _, index = F.max_pool2d(x, 2, return_indices=True)
    hit = torch.zeros(5, channels, 120).scatter_(2, index.flatten(2), 1.0).view_as(x)
    assert torch.equal(ours_grad != 0, (hit != 0) & (ours_grad != 0))  # never off PyTorch's argmax
    with torch.no_grad():  # without a gradient no index is kept; the values are the same
        assert torch.equal(max_pool_2x2(x), theirs.detach())


def test_odd_and_strided_inputs_fall_back_to_pytorch():
    odd = torch.randn(2, 3, 7, 9)
    assert torch.equal(max_pool_2x2(odd), F.max_pool2d(odd, 2))
    strided = torch.randn(2, 3, 8, 16)[..., ::2]
    assert torch.equal(max_pool_2x2(strided), F.max_pool2d(strided, 2))
    assert is_pool_2x2(nn.MaxPool2d(2)) and is_pool_2x2(nn.MaxPool2d((2, 2), stride=2))
    assert not any(is_pool_2x2(m) for m in (nn.MaxPool2d(3), nn.MaxPool2d(2, stride=1), nn.MaxPool2d(2, padding=1),
                                            nn.MaxPool2d(2, ceil_mode=True), nn.AvgPool2d(2)))


def test_nan_activations_still_reach_the_finite_output_check():
    x = torch.ones(1, 1, 4, 4)
    x[0, 0, 1, 1] = float("nan")
    assert torch.isnan(max_pool_2x2(x)[0, 0, 0, 0])
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32, 3))
    with torch.no_grad():
        model[0].bias.fill_(float("inf"))
        model[0].weight.fill_(-1.0)  # inf − inf = NaN inside the pooling's windows
    with pytest.raises(NonFiniteOutputError):
        gradient_model(finite_outputs(model.eval()), torch.ones(2, 1, 8, 8))(torch.ones(2, 1, 8, 8))


def test_the_rewritten_model_shares_the_weights(standard, fmnist_test):
    x = fmnist_test.images[:8]
    fast = gradient_model(finite_outputs(standard), x)
    assert isinstance(fast, FiniteOutputs) and fast.model is not standard  # rewritten, behind the check
    assert gradient_model(standard, x.to("meta")) is standard  # off the CPU: the model itself
    with torch.no_grad():
        assert torch.equal(fast(x), standard(x))
        weight = next(standard.head.parameters())
        saved = weight.clone()
        weight.mul_(2)  # an in-place update (an optimiser step) reaches the rewritten graph
        try:
            assert torch.equal(fast(x), standard(x))
        finally:
            weight.copy_(saved)


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.5)])
def test_pgd_iterates_are_those_of_the_unchanged_model(standard, fmnist_test, monkeypatch, norm, eps):
    x, y = fmnist_test.images[:96], fmnist_test.labels[:96]

    def run():
        return pgd(standard, x, y, norm=norm, eps=eps, step_size=2.5 * eps / 8, steps=8, random_start="uniform",
                   generator=torch.Generator().manual_seed(5), keep="best")

    fast = run()
    monkeypatch.setattr(attacks_module, "gradient_model", lambda model, images: model)
    assert torch.equal(fast, run())  # bit for bit: the same gradients every step


@pytest.mark.parametrize("relu", [nn.ReLU(), F.relu])
def test_relu_moves_after_the_pooling_with_the_same_values_and_gradients(relu):
    """maxpool(relu(x)) runs as relu(maxpool(x)): windows all negative, all zero, with a single positive,
    plateaus and ties must give the same outputs and input gradients as the unchanged model."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.pool, self.relu = nn.Conv2d(3, 3, 1), nn.MaxPool2d(2), relu

        def forward(self, x):
            return self.pool(self.relu(self.conv(x))).flatten(1).sum(1, keepdim=True)

    block = Block().eval()
    with torch.no_grad():  # the identity 1×1 convolution: the windows below reach the ReLU as they are
        block.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        block.conv.bias.zero_()
    x = tied_activations(0, 3) - 1.0  # ties and plateaus, now many windows ≤ 0
    x[2] = -torch.rand(3, 12, 10)  # all negative
    x[3] = 0.0  # all zero
    fast = _with_fast_pooling(block)  # (gradient_model only rewrites the per-sample types it knows)
    order = [n.target for n in fast.graph.nodes if n.op in ("call_function", "call_module")]
    assert order.index(max_pool_2x2) < next(i for i, t in enumerate(order) if t in ("relu", F.relu))
    ours_in, theirs_in = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours, theirs = fast(ours_in), block(theirs_in)
    assert torch.equal(ours, theirs)
    grad_out = torch.randn_like(ours)
    (ours * grad_out).sum().backward()
    (theirs * grad_out).sum().backward()
    assert torch.equal(ours_in.grad, theirs_in.grad)
