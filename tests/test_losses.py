"""Losses: FocusSDF's documented properties, hand-computed baselines, and the objective parser."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medsam_focus.errors import MedsamFocusError
from medsam_focus.losses import (
    OBJECTIVES,
    BCELoss,
    BoundaryLoss,
    DistancePenalisedCELoss,
    FocusSDFLoss,
    HausdorffDTLoss,
    SignedDistanceRegressionLoss,
    SoftDiceLoss,
    build_objective,
    central_difference,
    focus_weights,
    known_terms,
    parse_objective,
    target_signed_field,
)
from medsam_focus.sdf import reference_frame_sdf, signed_distance

TERMS = {
    "dice": SoftDiceLoss,
    "bce": BCELoss,
    "focussdf": FocusSDFLoss,
    "boundary": BoundaryLoss,
    "hausdorff": HausdorffDTLoss,
    "sdm": SignedDistanceRegressionLoss,
    "dmp": DistancePenalisedCELoss,
}


def disk(size: int, radius: float, centre=None) -> torch.Tensor:
    """(1, 1, size, size) float mask of a disk."""
    cy, cx = centre or ((size - 1) / 2, (size - 1) / 2)
    rows, cols = np.mgrid[:size, :size]
    mask = np.hypot(rows - cy, cols - cx) <= radius
    return torch.from_numpy(mask.astype(np.float32))[None, None]


# --- the 5 x 5 example -----------------------------------------------------------------------------
# A 3 x 3 square in a 5 x 5 image. By the FOCUSSDF.md definition (unit spacing, h = 0.5):
# centre -(2 - 0.5), the 8 other inside pixels -(1 - 0.5), the 12 outside pixels beside the
# square +(1 - 0.5), the 4 image corners +(sqrt(2) - 0.5). phi is given to the losses as is,
# i.e. already in reference-frame pixels.

C = math.sqrt(2) - 0.5
PHI_5 = np.array(
    [
        [C, 0.5, 0.5, 0.5, C],
        [0.5, -0.5, -0.5, -0.5, 0.5],
        [0.5, -0.5, -1.5, -0.5, 0.5],
        [0.5, -0.5, -0.5, -0.5, 0.5],
        [C, 0.5, 0.5, 0.5, C],
    ]
)
MASK_5 = (PHI_5 < 0).astype(np.float64)
# Logits +-log 3 give p = 0.75 inside the square and 0.25 outside: the right mask, unsure.
LOGITS_5 = np.where(MASK_5 > 0, math.log(3), -math.log(3))


def as_batch(array: np.ndarray, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(array, dtype=dtype)[None, None]


def test_the_5x5_signed_distance_is_what_sdf_computes():
    np.testing.assert_allclose(signed_distance(MASK_5), PHI_5, rtol=1e-6)


def test_boundary_loss_by_hand():
    # mean(p * phi): inside 0.75 * (8 * -0.5 - 1.5), outside 0.25 * (12 * 0.5 + 4 * C), over 25.
    expected = (0.75 * (-4.0 - 1.5) + 0.25 * (6.0 + 4 * C)) / 25
    value = BoundaryLoss()(as_batch(LOGITS_5), as_batch(MASK_5), as_batch(PHI_5))
    assert value.item() == pytest.approx(expected, rel=1e-12)
    # p = 0.5 everywhere: half the mean of phi.
    value = BoundaryLoss()(torch.zeros(1, 1, 5, 5, dtype=torch.float64), as_batch(MASK_5), as_batch(PHI_5))
    assert value.item() == pytest.approx(0.5 * (-4.0 - 1.5 + 6.0 + 4 * C) / 25, rel=1e-12)


def test_hausdorff_loss_by_hand():
    sum_phi_sq = 1.5**2 + 8 * 0.25 + 12 * 0.25 + 4 * C**2
    # The thresholded prediction is the ground truth, so d_p = d_g = |phi|; every pixel's
    # squared error is 0.25^2: mean(0.0625 * 2 phi^2).
    expected = 0.0625 * 2 * sum_phi_sq / 25
    value = HausdorffDTLoss()(as_batch(LOGITS_5), as_batch(MASK_5), as_batch(PHI_5))
    assert value.item() == pytest.approx(expected, rel=1e-6)
    # p = 0.5 everywhere: the prediction (p > 0.5) is empty, has no boundary, d_p = 0.
    value = HausdorffDTLoss()(torch.zeros(1, 1, 5, 5, dtype=torch.float64), as_batch(MASK_5), as_batch(PHI_5))
    assert value.item() == pytest.approx(0.25 * sum_phi_sq / 25, rel=1e-12)


def test_hausdorff_loss_uses_the_prediction_distance_map_by_hand():
    # Prediction = the square's top-left 2 x 2 pixels (rows 1-2, cols 1-2), p = 0.75 there.
    logits = np.full((5, 5), -math.log(3))
    logits[1:3, 1:3] = math.log(3)
    predicted = logits > 0
    d_pred = np.abs(signed_distance(predicted).astype(np.float64))
    # Spot-check d_pred by hand: inside pixels touch the contour (0.5); (3, 3) is sqrt(2) away
    # from (2, 2); (4, 4) is sqrt(8) away.
    assert d_pred[1, 1] == pytest.approx(0.5) and d_pred[3, 3] == pytest.approx(C, rel=1e-6)
    assert d_pred[4, 4] == pytest.approx(math.sqrt(8) - 0.5, rel=1e-6)
    p = np.where(predicted, 0.75, 0.25)
    expected = np.mean((p - MASK_5) ** 2 * (PHI_5**2 + d_pred**2))
    value = HausdorffDTLoss()(as_batch(logits), as_batch(MASK_5), as_batch(PHI_5))
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_hausdorff_prediction_map_is_in_the_units_of_phi():
    # Same mask in a 32-pixel loss frame: phi is scaled by 1024 / 32, and so must d_p be.
    target = disk(32, 9.0).double()
    logits = torch.where(target > 0, math.log(3), -math.log(3)).double()
    for frame in (32, 64, 1024):
        phi = reference_frame_sdf(target, frame).double()
        expected = (0.0625 * 2 * phi**2).mean().item()  # prediction == target: d_p = d_g = |phi|
        assert HausdorffDTLoss()(logits, target, phi).item() == pytest.approx(expected, rel=1e-6)


def test_sdm_loss_by_hand():
    f = np.where(MASK_5 > 0, -0.8, 0.8)  # tanh(-(+-log 3)) = -+0.8
    # Each side divided by its largest magnitude: inside by 1.5, outside by C.
    y = np.where(PHI_5 < 0, PHI_5 / 1.5, PHI_5 / C)
    assert y.min() == -1 and y.max() == pytest.approx(1)
    l1 = np.abs(f - y).mean()
    dot = (f * y).sum()
    expected = l1 - dot / ((f * f).sum() + (y * y).sum() + dot)
    value = SignedDistanceRegressionLoss()(as_batch(LOGITS_5), as_batch(MASK_5), as_batch(PHI_5))
    assert value.item() == pytest.approx(expected, rel=1e-12)
    # The product term alone bottoms out at -1/3 when the prediction equals the target.
    perfect = torch.tensor(-np.arctanh(y * (1 - 1e-12)))[None, None]
    value = SignedDistanceRegressionLoss()(perfect, as_batch(MASK_5), as_batch(PHI_5))
    assert value.item() == pytest.approx(-1 / 3, abs=1e-9)


def test_dmp_loss_by_hand():
    # BCE is log(4/3) at every pixel. Inverted, normalised distance per side: 1 on the pixels
    # touching the contour (8 inside, 12 outside), 0 on the deepest (centre) and farthest
    # (corners) ones. Mean of (1 + Phi) = (25 + 20) / 25.
    expected = math.log(4 / 3) * 45 / 25
    value = DistancePenalisedCELoss()(as_batch(LOGITS_5), as_batch(MASK_5), as_batch(PHI_5))
    assert value.item() == pytest.approx(expected, rel=1e-12)


def test_dice_and_bce_by_hand():
    # p = 0.5: Dice = 1 - (2 * 0.5 * 9 + s) / (0.25 * 25 + 9 + s); BCE = log 2.
    zeros = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    smooth = 1e-5
    assert SoftDiceLoss()(zeros, as_batch(MASK_5)).item() == pytest.approx(
        1 - (9 + smooth) / (6.25 + 9 + smooth), rel=1e-12
    )
    assert BCELoss()(zeros, as_batch(MASK_5)).item() == pytest.approx(math.log(2), rel=1e-12)
    # Per image, then the batch mean: a perfect image and an empty prediction of a mask.
    logits = torch.stack([torch.tensor(LOGITS_5 * 1e4), torch.full((5, 5), -1e4, dtype=torch.float64)])[:, None]
    target = torch.stack([torch.tensor(MASK_5)] * 2)[:, None]
    assert SoftDiceLoss()(logits, target).item() == pytest.approx((0 + (1 - smooth / (9 + smooth))) / 2, rel=1e-9)


def test_focussdf_with_gamma_zero_by_hand():
    # z = 0: s_p = 0, so L_F = mean(s_g^2) with uniform weights, and L_G is the mean squared
    # norm of numpy's gradient of s_g (central differences, one-sided at the border).
    s_g = np.tanh(-PHI_5 / 4)
    gy, gx = np.gradient(s_g)
    loss = FocusSDFLoss(gamma=0.0, lam=1.0, eps=2.0)
    value = loss(torch.zeros(1, 1, 5, 5, dtype=torch.float64), as_batch(MASK_5), as_batch(PHI_5))
    assert loss.last_focus.item() == pytest.approx(np.mean(s_g**2), rel=1e-12)
    assert loss.last_gradient.item() == pytest.approx(np.mean(gy**2 + gx**2), rel=1e-12)
    assert value.item() == pytest.approx(np.mean(s_g**2) + np.mean(gy**2 + gx**2), rel=1e-12)


def test_focussdf_weights_by_hand():
    # gamma > 0: weights exp(-gamma |phi|), normalised by their sum.
    gamma = 0.3
    w = np.exp(-gamma * np.abs(PHI_5))
    s_p, s_g = np.tanh(LOGITS_5 / 2), np.tanh(-PHI_5 / 4)
    gy, gx = np.gradient(s_p - s_g)
    loss = FocusSDFLoss(gamma=gamma, lam=0.7)
    value = loss(as_batch(LOGITS_5), as_batch(MASK_5), as_batch(PHI_5))
    focus = np.sum(w * (s_p - s_g) ** 2) / w.sum()
    gradient = np.sum(w * (gy**2 + gx**2)) / w.sum()
    assert value.item() == pytest.approx(focus + 0.7 * gradient, rel=1e-12)


# --- FocusSDF properties -----------------------------------------------------------------------


def test_focus_weights_and_target_field():
    phi = torch.tensor([-400.0, -2.0, 0.0, 2.0, 200.0])
    np.testing.assert_allclose(focus_weights(phi, 0.0).numpy(), 1.0)
    np.testing.assert_allclose(focus_weights(phi, 0.005).numpy(), np.exp(-0.005 * np.abs(phi.numpy())), rtol=1e-6)
    assert focus_weights(np.array([200.0]), 0.005)[0] == pytest.approx(math.exp(-1))
    field = target_signed_field(phi, eps=2.0).numpy()
    np.testing.assert_allclose(field, np.tanh(-phi.numpy() / 4), rtol=1e-6)
    assert field[0] == pytest.approx(1.0) and field[2] == 0.0 and field[-1] == pytest.approx(-1.0)


def test_central_difference_matches_torch_gradient():
    field = torch.randn(2, 1, 6, 7, dtype=torch.float64)
    for dim in (2, 3):
        np.testing.assert_allclose(central_difference(field, dim), torch.gradient(field, dim=dim)[0], rtol=1e-12)
    assert torch.equal(central_difference(torch.ones(1, 1, 1, 4), 2), torch.zeros(1, 1, 1, 4))


def test_focussdf_is_zero_with_zero_gradient_at_its_optimum():
    target = disk(48, 13.0).double()
    phi = reference_frame_sdf(target).double()
    eps = 2.0
    logits = (-phi / eps).requires_grad_(True)
    loss = FocusSDFLoss(eps=eps)(logits, target, phi)
    loss.backward()
    assert loss.item() < 1e-20
    assert logits.grad.abs().max().item() < 1e-12


def test_focussdf_grows_with_the_boundary_shift():
    target = disk(64, 15.0)
    phi = reference_frame_sdf(target)
    losses = {}
    for shift in (0, 1, 3):
        shifted = disk(64, 15.0 + shift)  # the boundary moved outward by `shift` pixels
        logits = -reference_frame_sdf(shifted) / 2.0
        losses[shift] = FocusSDFLoss()(logits, target, phi).item()
    assert losses[0] < 1e-12
    assert 0 < losses[1] < losses[3]


def test_focussdf_lambda_weights_the_gradient_term():
    target = disk(32, 9.0)
    logits = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    plain, weighted = FocusSDFLoss(lam=0.0), FocusSDFLoss(lam=2.5)
    value_plain = plain(logits, target).item()
    value_weighted = weighted(logits, target).item()
    assert weighted.last_gradient.item() > 0
    assert value_plain == pytest.approx(plain.last_focus.item())
    assert value_weighted - value_plain == pytest.approx(2.5 * weighted.last_gradient.item(), rel=1e-5)


def test_focussdf_computes_phi_in_the_reference_frame_when_not_given():
    target = disk(256, 60.0, centre=(100.0, 130.0))
    logits = torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(1))
    explicit = reference_frame_sdf(target, 256)
    assert explicit.abs().min().item() == pytest.approx(0.5 * 1024 / 256)
    loss = FocusSDFLoss()
    assert loss(logits, target).item() == pytest.approx(loss(logits, target, explicit).item(), rel=1e-6)
    # Distances in loss-frame pixels would weight the same mask differently.
    assert loss(logits, target).item() != pytest.approx(loss(logits, target, signed_distance(target)).item())


@pytest.mark.parametrize("name", sorted(TERMS))
@pytest.mark.parametrize("case", ["empty", "full", "extreme"])
def test_every_term_is_finite_and_differentiable_in_edge_cases(name, case):
    target = torch.zeros(2, 1, 24, 24)
    if case == "full":
        target += 1
    if case == "extreme":
        target[:, :, 5:15, 6:18] = 1
        logits = torch.where(torch.rand(2, 1, 24, 24, generator=torch.Generator().manual_seed(2)) < 0.5, 1e4, -1e4)
    else:
        logits = torch.randn(2, 1, 24, 24, generator=torch.Generator().manual_seed(3)) * 3
    logits = logits.clone().requires_grad_(True)
    value = TERMS[name]()(logits, target)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", ["focussdf", "boundary", "hausdorff", "sdm", "dmp", "dice", "bce"])
def test_gradients_match_finite_differences_in_float64(name):
    generator = torch.Generator().manual_seed(4)
    target = torch.zeros(2, 1, 7, 6, dtype=torch.float64)
    target[0, 0, 2:5, 1:4] = 1
    target[1, 0, 1:6, 2:6] = 1
    # Logits kept away from 0 so the Hausdorff loss's thresholded prediction cannot flip under
    # the finite-difference step.
    logits = torch.randn(2, 1, 7, 6, dtype=torch.float64, generator=generator)
    logits = (logits + 0.3 * torch.sign(logits)).requires_grad_(True)
    phi = reference_frame_sdf(target, 64).double() if name != "focussdf" else None
    term = FocusSDFLoss(gamma=0.05) if name == "focussdf" else TERMS[name]()
    assert torch.autograd.gradcheck(lambda z: term(z, target, phi), (logits,), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_half_precision_logits_are_evaluated_in_float32():
    target = disk(32, 9.0)
    logits = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    full = FocusSDFLoss()(logits, target)
    half = FocusSDFLoss()(logits.to(torch.bfloat16), target)
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(full.item(), rel=2e-2)


def test_input_errors_raise_the_project_error():
    loss = FocusSDFLoss()
    with pytest.raises(MedsamFocusError, match=r"\(B, 1, H, W\)"):
        loss(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8))
    with pytest.raises(MedsamFocusError, match="target shape"):
        loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 7))
    with pytest.raises(MedsamFocusError, match="phi has shape"):
        loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), torch.zeros(1, 8, 8))
    with pytest.raises(MedsamFocusError, match="eps"):
        FocusSDFLoss(eps=0)
    with pytest.raises(MedsamFocusError, match="gamma"):
        FocusSDFLoss(gamma=-1)


# --- objectives --------------------------------------------------------------------------------


def test_parse_objective():
    terms = parse_objective(" dice + 0.5*focussdf+2e-1 * BCE ")
    assert [(t.name, t.weight) for t in terms] == [("dice", 1.0), ("focussdf", 0.5), ("bce", 0.2)]
    for bad, message in [
        ("dice+focusdsf", "unknown loss term 'focusdsf'"),
        ("", "empty"),
        ("dice++bce", "not of the form"),
        ("0*dice", "positive"),
        ("dice+dice", "twice"),
        ("-1*dice", "not of the form"),
    ]:
        with pytest.raises(MedsamFocusError, match=message) as error:
            parse_objective(bad)
        assert "known terms: dice, bce, focussdf, boundary, hausdorff, sdm, dmp" in str(error.value) or (
            "twice" in message or "positive" in message
        )


def test_documented_objectives_build_and_their_terms_add_up():
    target = disk(40, 11.0).repeat(2, 1, 1, 1)
    target[1] = 0
    logits = torch.randn(2, 1, 40, 40, generator=torch.Generator().manual_seed(6)).requires_grad_(True)
    assert set(known_terms()) == set(TERMS)
    for spec in OBJECTIVES:
        objective = build_objective(spec)
        total, terms = objective(logits, target)
        assert list(terms) == spec.split("+")
        assert all(isinstance(value, float) for value in terms.values())
        assert total.item() == pytest.approx(sum(terms.values()), rel=1e-6)
        for name, value in terms.items():
            assert value == pytest.approx(TERMS[name]()(logits, target).item(), rel=1e-6)
        total.backward()
        assert torch.isfinite(logits.grad).all()
        logits.grad = None


def test_weights_and_warmup():
    target = disk(32, 8.0)
    logits = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(7))
    dice = SoftDiceLoss()(logits, target).item()
    focus = FocusSDFLoss()(logits, target).item()
    objective = build_objective("0.5*dice+3*focussdf", warmup_steps=10)
    for step, factor in [(0, 0.0), (4, 0.4), (10, 1.0), (25, 1.0), (None, 1.0)]:
        total, terms = objective(logits, target, step=step)
        assert terms["dice"] == pytest.approx(0.5 * dice, rel=1e-6)  # never ramped
        assert terms["focussdf"] == pytest.approx(3 * factor * focus, rel=1e-6)
        assert total.item() == pytest.approx(0.5 * dice + 3 * factor * focus, rel=1e-6)
        assert objective.last_details["warmup_factor"] == factor
    details = objective.last_details
    assert details["focussdf.focus"] + details["focussdf.gradient"] == pytest.approx(terms["focussdf"], rel=1e-6)
    with pytest.raises(MedsamFocusError, match="step"):
        objective(logits, target, step=-1)
    with pytest.raises(MedsamFocusError, match="warmup_steps"):
        build_objective("dice", warmup_steps=-3)


def test_term_options_reach_the_terms():
    objective = build_objective("dice+focussdf", term_options={"focussdf": {"gamma": 0.02, "lam": 0.0}})
    assert objective.terms["focussdf"].gamma == 0.02 and objective.terms["focussdf"].lam == 0.0
    with pytest.raises(MedsamFocusError, match="not in the objective"):
        build_objective("dice", term_options={"focussdf": {"gamma": 0.02}})
    with pytest.raises(MedsamFocusError, match="bad options"):
        build_objective("dice+focussdf", term_options={"focussdf": {"sigma": 1}})


def test_the_objective_uses_the_cached_phi_and_computes_it_once_otherwise(monkeypatch):
    import medsam_focus.losses._inputs as inputs

    target = disk(32, 8.0)
    logits = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(8))
    objective = build_objective("dice+focussdf+boundary+dmp")
    calls = []
    original = inputs.reference_frame_sdf
    monkeypatch.setattr(inputs, "reference_frame_sdf", lambda mask: calls.append(1) or original(mask))
    _, computed = objective(logits, target)
    assert len(calls) == 1
    _, cached = objective(logits, target, phi=reference_frame_sdf(target))
    assert len(calls) == 1
    assert cached == pytest.approx(computed, rel=1e-6)
    # A different cached phi really is what the terms use.
    _, other = objective(logits, target, phi=reference_frame_sdf(disk(32, 12.0)))
    assert other["boundary"] != pytest.approx(computed["boundary"])
    assert other["dice"] == pytest.approx(computed["dice"])
