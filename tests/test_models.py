"""Every registered network: shapes, gradients, finiteness, and registry errors."""

from __future__ import annotations

import pytest
import torch

from digitlab.core.errors import DigitlabError
from digitlab.training.models import available_models, count_parameters, create_model, get_spec


@pytest.mark.parametrize("name", available_models())
def test_forward_backward_shapes_and_finite(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name)
    x = torch.rand(5, 1, 28, 28, requires_grad=False)
    logits = model(x)
    assert logits.shape == (5, 10)
    assert torch.isfinite(logits).all()
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(5))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", available_models())
def test_registry_entry_describes_itself(name: str) -> None:
    spec = get_spec(name)
    assert spec.description
    assert count_parameters(create_model(name)) > 1000


def test_eval_mode_is_deterministic_batch_of_one() -> None:
    model = create_model("digitnet").eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        batch = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, single, rtol=1e-4, atol=1e-5)


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(DigitlabError) as err:
        create_model("resnet9000")
    for name in available_models():
        assert name in str(err.value)


def test_bad_config_is_a_clear_error() -> None:
    with pytest.raises(DigitlabError, match="bad config"):
        create_model("digitnet", colour=3)


def test_reference_mlps_have_the_published_shapes() -> None:
    small = create_model("mlp_small")
    widths = [m.out_features for m in small.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [128, 64, 10]
    deep = create_model("mlp_deep")
    widths = [m.out_features for m in deep.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [512, 256, 128, 60, 10]
    rates = [m.p for m in deep.modules() if isinstance(m, torch.nn.Dropout)]
    assert rates == [0.3, 0.2, 0.1, 0.05]


def test_ensemble_averages_its_members_calibrated_logits() -> None:
    """The ensemble's output is the mean of each member's logits / its temperature: logits
    again (not log-probabilities), so their energy keeps its meaning."""
    torch.manual_seed(0)
    members = [
        {"name": "digitnet_fast", "config": {}, "temperature": 0.5},
        {"name": "digitnet", "config": {"width": 8}, "temperature": 2.0},
    ]
    ensemble = create_model("ensemble", members=members).eval()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        a, b = (m(x) for m in ensemble.members)
        torch.testing.assert_close(ensemble(x), (a / 0.5 + b / 2.0) / 2)
