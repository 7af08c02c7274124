"""The model zoo: every network digitlab can train, selected by name from a registry.

All models take ``(N, 1, 28, 28)`` float32 images with ink = 1.0 and paper = 0.0 (MNIST's own
polarity, pixel / 255) and return ``(N, 10)`` logits. Normalisation to zero mean / unit variance
happens inside the model (:class:`Normalize`), so every consumer — training, the recogniser, the
ONNX export — feeds the same plain ``[0, 1]`` tensor and cannot get it wrong.

A model is rebuilt from ``(name, config)``: ``create_model(name, **config)``. Checkpoints store
both, so a checkpoint needs no code beyond this file to load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from digitlab.core.constants import IMAGE_SIDE, MNIST_MEAN, MNIST_STD, NUM_CLASSES
from digitlab.core.errors import DigitlabError

# Mean and standard deviation of the 60,000 MNIST training images' pixels scaled to [0, 1]
# (47,040,000 pixels): 0.1307 and 0.3081, the values the PyTorch and Keras examples use too.


class Normalize(nn.Module):
    """``(x - MNIST_MEAN) / MNIST_STD``: a fixed first layer, so inputs stay in [0, 1]."""

    def __init__(self, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> None:
        super().__init__()
        self.mean = mean
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _flat_features(features: nn.Module) -> int:
    """Number of features ``features`` produces for one 28x28 image (no hard-coded sizes)."""
    with torch.no_grad():
        return features(torch.zeros(1, 1, IMAGE_SIDE, IMAGE_SIDE)).flatten(1).shape[1]


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    """3x3 same-padding convolution, batch norm, ReLU: the building block of our own nets."""
    return [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


# --------------------------------------------------------------------------------------------
# Networks of the systems people compare against (kept faithful, for side-by-side study).
# --------------------------------------------------------------------------------------------


class MLP(nn.Module):
    """Fully connected net: 784 -> hidden... -> 10, ReLU, optional dropout after each layer."""

    def __init__(
        self, hidden: tuple[int, ...] = (128, 64), dropout: tuple[float, ...] = ()
    ) -> None:
        super().__init__()
        if dropout and len(dropout) != len(hidden):
            raise DigitlabError(
                f"MLP: dropout needs one rate per hidden layer ({len(hidden)}), got {len(dropout)}"
            )
        layers: list[nn.Module] = [Normalize(), nn.Flatten()]
        width = IMAGE_SIDE * IMAGE_SIDE
        for i, h in enumerate(hidden):
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            if dropout and dropout[i] > 0:
                layers.append(nn.Dropout(dropout[i]))
            width = h
        layers.append(nn.Linear(width, NUM_CLASSES))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PlainCNN(nn.Module):
    """Conv-ReLU-MaxPool stages, then FC layers with dropout (the common tutorial CNN shape).

    ``channels`` gives one 3x3 conv per stage, each followed by 2x2 max-pooling, except that
    stages past the third pool no further (a 28x28 input is 3x3 after three pools).
    """

    def __init__(
        self,
        channels: tuple[int, ...] = (32, 64, 128),
        fc: tuple[int, ...] = (128,),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [Normalize()]
        c_in = 1
        for i, c in enumerate(channels):
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
            c_in = c
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten()]
        width = _flat_features(self.features)
        for h in fc:
            head += [nn.Dropout(dropout), nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        head += [nn.Dropout(dropout), nn.Linear(width, NUM_CLASSES)]
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class PyTorchExampleNet(nn.Module):
    """The network of pytorch/examples ``mnist/main.py``: the reference for speed benchmarks.

    conv 1->32 (3x3, valid) -> conv 32->64 (3x3, valid) -> max-pool 2 -> dropout 0.25 ->
    FC 9216->128 -> dropout 0.5 -> FC 128->10. (9216 = 64 * 12 * 12, computed, not typed.)
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            Normalize(),
            nn.Conv2d(1, 32, 3),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(_flat_features(self.features), 128),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(128, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# --------------------------------------------------------------------------------------------
# Our own networks: batch norm, 3x3 convs, resolution spent only where it pays.
# --------------------------------------------------------------------------------------------


class DigitNet(nn.Module):
    """Our CNN family, sized by ``width`` and ``depth``.

    Stage resolutions 28 -> 14 -> 7 -> 1 (global pooling):
      - stage 1 at 28x28: one conv 1 -> w (the only full-resolution layer: it is cheap with one
        input channel, and strokes are only ~2-3 px wide, so we pool right after it);
      - stage 2 at 14x14: ``depth`` convs w -> 2w;
      - stage 3 at 7x7:   ``depth`` convs 2w -> 4w;
      - global max+avg pooling -> dropout -> linear 8w -> 10.
    ``(N,1,28,28) -> (N,w,14,14) -> (N,2w,7,7) -> (N,4w,7,7) -> (N,8w) -> (N,10)``
    """

    def __init__(self, width: int = 32, depth: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        w = width
        layers: list[nn.Module] = [Normalize(), *_conv_bn(1, w), nn.MaxPool2d(2)]
        c = w
        for _ in range(depth):
            layers += _conv_bn(c, 2 * w)
            c = 2 * w
        layers.append(nn.MaxPool2d(2))
        for _ in range(depth):
            layers += _conv_bn(c, 4 * w)
            c = 4 * w
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * c, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)  # (N, 4w, 7, 7)
        # Max pooling keeps "is this stroke anywhere", average pooling keeps "how much of it".
        pooled = torch.cat([f.amax(dim=(2, 3)), f.mean(dim=(2, 3))], dim=1)  # (N, 8w)
        return self.fc(self.dropout(pooled))


class FastNet(nn.Module):
    """Two convolutions and one hidden FC layer: built for accuracy per second of CPU training.

    Pooling before the ReLU (same result, a quarter of the activations to rectify), a 5x5
    first conv so two convs see the whole stroke, and valid padding that drops the empty border:
    ``(N,1,28,28) -conv5-> (N,c1,24,24) -pool-> (N,c1,12,12) -conv3-> (N,c2,10,10) -pool->
    (N,c2,5,5) -> FC fc -> 10``.
    """

    def __init__(self, c1: int = 24, c2: int = 32, fc: int = 256, batchnorm: bool = True) -> None:
        super().__init__()

        def norm(c: int) -> nn.Module:
            return nn.BatchNorm2d(c) if batchnorm else nn.Identity()

        self.features = nn.Sequential(
            Normalize(),
            nn.Conv2d(1, c1, 5, bias=not batchnorm),
            nn.MaxPool2d(2),
            norm(c1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 3, bias=not batchnorm),
            nn.MaxPool2d(2),
            norm(c2),
            nn.ReLU(inplace=True),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(_flat_features(self.features), fc),
            nn.ReLU(inplace=True),
            nn.Linear(fc, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Ensemble(nn.Module):
    """Several zoo networks averaged: the accuracy option, at the cost of one pass per member.

    ``members`` are ``{"name", "config", "temperature"}`` dicts. Each member's logits are divided
    by its own calibrated temperature (so members trained differently weigh the same) and the
    results averaged: ``(N, 10)`` logits again, a geometric mean of the members' probabilities.
    Averaging logits rather than probabilities keeps their scale, so the logit energy the
    recogniser reads (``logsumexp``: "how much like a digit") means for the ensemble what it
    means for one network; the ensemble's own temperature is fitted on top.
    """

    def __init__(self, members: list[dict] | tuple[dict, ...] = ()) -> None:
        super().__init__()
        if not members:
            raise DigitlabError("ensemble: needs at least one member network")
        self.members = nn.ModuleList(
            create_model(m["name"], **m.get("config", {})) for m in members
        )
        self.register_buffer(
            "temperatures", torch.tensor([float(m.get("temperature", 1.0)) for m in members])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.stack(
            [m(x) / t for m, t in zip(self.members, self.temperatures, strict=True)]
        )  # (members, N, 10)
        return logits.mean(0)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A registered network: how to build it and what it is for."""

    name: str
    builder: Callable[..., nn.Module]
    defaults: dict
    description: str

    def build(self, **overrides) -> nn.Module:
        return self.builder(**{**self.defaults, **overrides})


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str, builder: Callable[..., nn.Module], description: str, **defaults
) -> None:
    """Add a network to the zoo under ``name`` (``defaults`` are its constructor arguments)."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = ModelSpec(name, builder, defaults, description)


def available_models() -> list[str]:
    """Names of every registered network, in registration order."""
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``; an unknown name is an error listing the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DigitlabError(
            f"unknown model {name!r}; valid names: {', '.join(available_models())}"
        ) from None


def create_model(name: str, **config) -> nn.Module:
    """Build a fresh network by registry name, with optional constructor overrides."""
    spec = get_spec(name)
    try:
        return spec.build(**config)
    except TypeError as exc:
        raise DigitlabError(f"model {name!r}: bad config {config!r}: {exc}") from None


def model_config(name: str, **overrides) -> dict:
    """Full constructor config of ``name`` with ``overrides`` applied (stored in checkpoints)."""
    return {**get_spec(name).defaults, **overrides}


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


register_model(
    "mlp_small",
    MLP,
    "Small MLP 784-128-64-10: the classic first tutorial network.",
    hidden=(128, 64),
    dropout=(),
)
register_model(
    "mlp_deep",
    MLP,
    "Deep MLP 784-512-256-128-60-10, dropout 0.3/0.2/0.1/0.05.",
    hidden=(512, 256, 128, 60),
    dropout=(0.3, 0.2, 0.1, 0.05),
)
register_model(
    "pytorch_example",
    PyTorchExampleNet,
    "The pytorch/examples mnist net (2 conv, FC 128): the speed benchmark's reference.",
)
register_model(
    "cnn3",
    PlainCNN,
    "3-conv CNN 32-64-128, max-pool, FC 128, dropout 0.5 (Keras-tutorial style).",
    channels=(32, 64, 128),
    fc=(128,),
    dropout=0.5,
)
register_model(
    "cnn4",
    PlainCNN,
    "4-conv CNN 32-64-128-256, max-pool, dropout 0.5, two FC layers (256, 128).",
    channels=(32, 64, 128, 256),
    fc=(256, 128),
    dropout=0.5,
)
register_model(
    "digitnet_fast",
    FastNet,
    "Ours, fastest: 2 convs (5x5, 3x3) + FC 256, batch norm, pool before ReLU (time-to-99%).",
    c1=24,
    c2=32,
    fc=256,
    batchnorm=True,
)
register_model(
    "digitnet",
    DigitNet,
    "Ours, most accurate: batch-norm CNN, global max+avg pooling (bundled model: --depth 2).",
    width=32,
    depth=1,
    dropout=0.1,
)
register_model(
    "ensemble",
    Ensemble,
    "Average of trained zoo networks (made by scripts/make_ensemble.py): accuracy option.",
    members=(
        {"name": "digitnet", "config": {"width": 32, "depth": 1}},
        {"name": "digitnet", "config": {"width": 32, "depth": 1}},
    ),
)
