"""Gate math at known points, the crispness gradient, and the schedules."""

from __future__ import annotations

import math

import pytest
import torch

from chipnet_zoo.gates import GateSchedule, crispness_loss, heaviside, logistic, soft_keep, straight_through


def test_logistic_known_points():
    psi = torch.tensor([0.0, 1.0, -2.0])
    z_tilde = logistic(psi, 2.0)
    expected = torch.tensor([0.5, 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(4.0))])
    assert torch.allclose(z_tilde, expected)


def test_heaviside_known_points_and_monotone():
    gamma = 2.0
    z_tilde = torch.tensor([0.0, 0.5, 1.0])
    z = heaviside(z_tilde, gamma)
    assert z[0].item() == pytest.approx(0.0, abs=1e-7)
    assert z[2].item() == pytest.approx(1.0, abs=1e-7)
    # the authors' starting point: psi ~ 0 -> z~ = 0.5 -> z ~ 0.70 (every channel "on")
    assert z[1].item() == pytest.approx(1 - math.exp(-1.0) + 0.5 * math.exp(-2.0), abs=1e-6)
    assert z[1].item() == pytest.approx(0.7, abs=0.01)
    grid = torch.linspace(0, 1, 101, dtype=torch.float64)
    for g in (2.0, 16.0):
        assert bool((heaviside(grid, g).diff() > 0).all())
    assert bool((heaviside(grid, 256.0).diff() >= 0).all())  # saturates to 1.0 in float64
    # large gamma -> a step that is ~1 for every z~ > 0
    assert heaviside(torch.tensor([0.05]), 256.0).item() > 0.999


def test_crispness_zero_only_at_0_and_1():
    z_tilde = torch.tensor([0.0, 1.0])
    assert crispness_loss(heaviside(z_tilde, 4.0), z_tilde).item() == pytest.approx(0.0, abs=1e-7)
    z_tilde = torch.tensor([0.3, 0.6])
    assert crispness_loss(heaviside(z_tilde, 4.0), z_tilde).item() > 0.01


def test_crispness_gradient_pushes_gates_to_0_or_1():
    psi = torch.tensor([-1.5, -0.8, 0.8, 1.5], requires_grad=True)
    beta, gamma = 1.0, 8.0
    optimizer = torch.optim.SGD([psi], lr=5.0)
    start = logistic(psi, beta).detach().clone()
    start_loss = float(crispness_loss(heaviside(start, gamma), start))
    for _ in range(200):
        z_tilde = logistic(psi, beta)
        loss = crispness_loss(heaviside(z_tilde, gamma), z_tilde)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    end = logistic(psi, beta).detach()
    distance = torch.minimum(end, 1 - end)  # distance to the nearest of 0 and 1
    assert bool((distance < torch.minimum(start, 1 - start)).all())
    assert float(crispness_loss(heaviside(end, gamma), end)) < start_loss / 10


def test_soft_keep_is_a_smooth_step_at_half():
    z = torch.tensor([0.0, 0.5, 1.0])
    keep = soft_keep(z, 60.0)
    assert keep[0].item() < 1e-12 and keep[1].item() == pytest.approx(0.5) and keep[2].item() > 1 - 1e-12


@pytest.mark.parametrize("n", [0, 1, 5, 10, 14, 20, 40])
def test_schedules_after_n_epochs_match_the_authors(n):
    s = GateSchedule()
    e = s.reference_epoch(n, 20)  # a 20-epoch run is the reference
    assert e == n
    assert s.beta(e) == pytest.approx(min(6.0, 1.0 + 0.02 * n))
    assert s.gamma(e) == pytest.approx(min(256.0, 2.0 * math.sqrt(2.0) ** n))
    assert s.steepness(e) == pytest.approx(min(60.0, 10.0 + 5.0 * n))


def test_schedules_stretch_over_shorter_runs():
    s = GateSchedule()
    # after 2 of 4 epochs a run is where the 20-epoch reference is after 10
    e = s.reference_epoch(2, 4)
    assert e == 10
    assert s.gamma(e) == pytest.approx(64.0)
    assert s.gamma(s.reference_epoch(4, 4)) == 256.0  # capped by the end of any run
    assert s.steepness(s.reference_epoch(4, 4)) == 60.0


def test_straight_through_value_mixes_and_gradient_is_identity():
    z = torch.tensor([0.2, 0.7, 0.9], requires_grad=True)
    hard = torch.tensor([0.0, 1.0, 0.0])
    out = straight_through(z, hard, 0.25)
    assert torch.allclose(out, 0.75 * z.detach() + 0.25 * hard)
    assert torch.equal(straight_through(z, hard, 1.0), hard)
    (out * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.equal(z.grad, torch.tensor([1.0, 2.0, 3.0]))  # as if the forward value were z itself
