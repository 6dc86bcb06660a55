"""Augmentation for training only: ``--augment flip[:horizontal|vertical|both],rotate:F,zoom:F,translate:F,
contrast:F,brightness:F`` on train, finetune and advise.

The spec becomes Keras' own random image layers (``RandomFlip``, ``RandomRotation``, ``RandomZoom``,
``RandomTranslation``, ``RandomContrast``, ``RandomBrightness``; pixels 0..255, as data reaches the model),
seeded from the run's seed. They are applied to each training batch in front of the network
(:class:`AugmentedForward`) and are never part of the network itself: the registered, served and
exported graph has no augmentation layer; the spec is recorded with the version's settings.

With a frozen part the augmented images must pass through it every time, so its features cannot be
computed once. Two ways (``TrainConfig.augment_views``):

- **stream** (default, ``augment_views`` 0): every batch of every epoch is augmented and runs through the
  frozen part inside the compiled training step (in inference mode, no gradients there);
- **views** (``--augment-views K``): K augmented copies of the training set are passed through the
  frozen part once, before training, and kept like features (in memory, or on disk when they do not
  fit); epoch ``e`` trains on view ``e mod K``. Much cheaper per epoch; each image has only K variants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reuse.backend.spec import Forward
from reuse.errors import InvalidInput
from reuse.text import echo

KINDS = ("flip", "rotate", "zoom", "translate", "contrast", "brightness")
FLIP_MODES = {"horizontal": "horizontal", "vertical": "vertical", "both": "horizontal_and_vertical"}
EXAMPLE = "flip,rotate:0.1"


@dataclass(frozen=True)
class AugmentSpec:
    """Parsed ``--augment``: ``(kind, value)`` steps in order (a flip's value is its mode)."""

    steps: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str) -> AugmentSpec:
        """Parse ``flip,rotate:0.1,...``.

        Raises:
            InvalidInput: an unknown step, a missing or out-of-range factor, a step given twice.
        """
        steps: list[tuple[str, str]] = []
        parts = [p.strip() for p in str(text).split(",")]
        if not text or not all(parts):
            raise InvalidInput(f"invalid --augment {echo(text)}: expected steps separated by commas, e.g. "
                               f"{EXAMPLE}")
        for part in parts:
            kind, _, value = part.partition(":")
            if kind not in KINDS:
                raise InvalidInput(f"unknown augmentation {echo(kind)} in --augment {echo(text)}: expected "
                                   f"{', '.join(KINDS)}")
            if any(k == kind for k, _ in steps):
                raise InvalidInput(f"augmentation {kind!r} given twice in --augment {echo(text)}")
            if kind == "flip":
                value = value or "horizontal"
                if value not in FLIP_MODES:
                    raise InvalidInput(f"invalid flip mode {echo(value)}: expected one of "
                                       f"{', '.join(FLIP_MODES)}")
            else:
                try:
                    f = float(value)
                except ValueError:
                    f = float("nan")
                if not 0.0 < f <= 1.0:
                    raise InvalidInput(f"invalid {kind} factor {echo(value)} in --augment {echo(text)}: "
                                       f"expected a number in (0, 1], e.g. {kind}:0.1")
            steps.append((kind, value))
        return cls(tuple(steps))

    def to_string(self) -> str:
        return ",".join(k if k == "flip" and v == "horizontal" else f"{k}:{v}" for k, v in self.steps)

    def layers(self, seed: int) -> list[Any]:
        """New Keras layers for the steps, each seeded from ``seed``."""
        import keras

        kl = keras.layers
        out = []
        for i, (kind, value) in enumerate(self.steps):
            s = seed * 1009 + i
            name = f"augment_{kind}"
            if kind == "flip":
                out.append(kl.RandomFlip(FLIP_MODES[value], seed=s, name=name))
            elif kind == "rotate":
                out.append(kl.RandomRotation(float(value), seed=s, name=name))
            elif kind == "zoom":
                out.append(kl.RandomZoom(float(value), seed=s, name=name))
            elif kind == "translate":
                out.append(kl.RandomTranslation(float(value), float(value), seed=s, name=name))
            elif kind == "contrast":
                out.append(kl.RandomContrast(float(value), value_range=(0, 255), seed=s, name=name))
            else:
                out.append(kl.RandomBrightness(float(value), value_range=(0, 255), seed=s, name=name))
        return out


# The rows one draw of the augmentation covers when views are computed (--augment-views): a random
# layer draws its transforms for a whole batch, so a view's batches have this fixed size, not one chosen
# from the memory budget (which depends on what the process holds at the time).
VIEW_ROWS = 32


class Augmenter:
    """The spec's layers as one callable on an image batch, with its random state (seed generators)."""

    def __init__(self, spec: AugmentSpec, seed: int, input_shape: tuple[Any, ...]) -> None:
        import keras

        self.spec, self.seed = spec, seed
        self.model = keras.Sequential([keras.Input(input_shape), *spec.layers(seed)], name="augment")

    def __call__(self, x: Any) -> Any:
        return self.model(x, training=True)

    @property
    def states(self) -> list[Any]:
        from reuse.train.network import seed_generator_states

        return seed_generator_states(self.model)

    def reseed(self, *key: int) -> None:
        """Set every layer's random state from ``(seed, *key)``: a view's batch draws the same numbers
        whichever process or backend computes it."""
        for i, state in enumerate(self.states):
            mixed = int(np.random.SeedSequence([self.seed, i, *key]).generate_state(1)[0] % (2**31 - 1))
            state.assign(np.array([self.seed, mixed], dtype=state.dtype).reshape(tuple(state.shape)))


def check_images(model: Any, spec: AugmentSpec | None) -> None:
    """Refuse augmentation of a model whose input is not one image (height, width, channels).

    Raises:
        InvalidInput: naming the model's input shape.
    """
    if spec is None:
        return
    shapes = [tuple(t.shape[1:]) for t in model.inputs]
    if len(shapes) != 1 or len(shapes[0]) != 3:
        shown = ", ".join(str(s) for s in shapes)
        raise InvalidInput(f"--augment needs a model with one image input (height, width, channels); model "
                           f"{model.name!r} takes {shown}")


class AugmentedForward(Forward):
    """The network with the augmentation in front of it while training (never at inference)."""

    def __init__(self, model: Any, augmenter: Augmenter) -> None:
        super().__init__(model)
        self.augmenter = augmenter

    def __call__(self, x: Any, training: bool) -> Any:
        if training:
            x = self.augmenter(x)
        return super().__call__(x, training)

    @property
    def variables(self) -> list[Any]:
        return list(self.augmenter.model.variables) + super().variables


class ViewForward(Forward):
    """A frozen part applied to augmented inputs (for computing one augmented view's features)."""

    def __init__(self, model: Any, augmenter: Augmenter) -> None:
        super().__init__(model)
        self.augmenter = augmenter

    def __call__(self, x: Any, training: bool) -> Any:
        return super().__call__(self.augmenter(x), False)

    @property
    def variables(self) -> list[Any]:
        return list(self.augmenter.model.variables) + super().variables
