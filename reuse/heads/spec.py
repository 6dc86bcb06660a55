"""Head specs: the new layers put on top of reused ones, as frozen dataclasses, and their canonical
short string and file form.

:mod:`reuse.heads` parses both forms into a :class:`HeadSpec`; :mod:`reuse.heads.layers` builds the
Keras layers from one.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any

from reuse.errors import InvalidInput

_OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")


@dataclass(frozen=True)
class DenseSpec:
    units: int
    activation: str = "linear"
    slope: float | None = None  # leaky_relu only
    initializer: str = "glorot_uniform"
    l2: float | None = None
    max_norm: float | None = None


@dataclass(frozen=True)
class BatchNormSpec:
    momentum: float = 0.99
    epsilon: float = 0.001


@dataclass(frozen=True)
class DropoutSpec:
    rate: float


@dataclass(frozen=True)
class MaxoutSpec:
    units: int


@dataclass(frozen=True)
class ActivationSpec:
    activation: str
    slope: float | None = None  # leaky_relu only


@dataclass(frozen=True)
class FlattenSpec:
    """Flatten everything but the batch axis."""


@dataclass(frozen=True)
class GlobalAvgPoolSpec:
    """Global average pooling (``gap``): 1-D, 2-D or 3-D by the rank of the input it gets."""


@dataclass(frozen=True)
class GlobalMaxPoolSpec:
    """Global max pooling (``gmp``): 1-D, 2-D or 3-D by the rank of the input it gets."""


LayerSpec = (
    DenseSpec
    | BatchNormSpec
    | DropoutSpec
    | MaxoutSpec
    | ActivationSpec
    | FlattenSpec
    | GlobalAvgPoolSpec
    | GlobalMaxPoolSpec
)
LAYER_TYPES: dict[str, type] = {"dense": DenseSpec, "batchnorm": BatchNormSpec, "dropout": DropoutSpec,
                           "maxout": MaxoutSpec, "activation": ActivationSpec, "flatten": FlattenSpec,
                           "gap": GlobalAvgPoolSpec, "gmp": GlobalMaxPoolSpec}
_TYPE_OF = {cls: name for name, cls in LAYER_TYPES.items()}


@dataclass(frozen=True)
class HeadSpec:
    """The head's layers, bottom to top; the last one is the output unless an output layer is appended."""

    layers: tuple[LayerSpec, ...] = ()

    def to_string(self) -> str:
        """The canonical short string (parses back to an equal spec)."""
        return ",".join(layer_token(layer) for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        """The file form: ``{"layers": [{"type": ..., field: value}, ...]}`` with default fields left out."""
        out = []
        for layer in self.layers:
            entry: dict[str, Any] = {"type": _TYPE_OF[type(layer)]}
            for f in fields(layer):
                value = getattr(layer, f.name)
                if f.default is MISSING or (value is not None and value != f.default):
                    entry[f.name] = value
            out.append(entry)
        return {"layers": out}

    def with_output(self, *, classes: int | None = None, regression: bool | int = False) -> HeadSpec:
        """This head plus the output layer for ``classes`` (softmax) or ``regression`` (linear).

        ``regression=True`` means one target; an integer asks for that many.

        Raises:
            InvalidInput: both or a bad count were given, or the head already ends in an output layer.
        """
        if classes is None and regression is False:
            return self
        if classes is not None and regression is not False:
            raise InvalidInput("give either classes or regression, not both")
        if classes is not None:
            if not is_int(classes) or classes < 2:
                raise InvalidInput(f"invalid classes {classes!r}: expected an integer >= 2")
            out = DenseSpec(int(classes), "softmax")
        else:
            targets = 1 if regression is True else regression
            if not is_int(targets) or targets < 1:
                raise InvalidInput(f"invalid regression targets {regression!r}: expected True or an "
                                   "integer >= 1")
            out = DenseSpec(int(targets), "linear")
        last = self.layers[-1] if self.layers else None
        if isinstance(last, (DenseSpec, ActivationSpec)) and last.activation in _OUTPUT_ACTIVATIONS:
            raise InvalidInput(
                f"the head already ends in an output layer ({layer_token(last)!r}); drop it or drop "
                f"{'classes' if classes is not None else 'regression'}"
            )
        return HeadSpec((*self.layers, out))


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: float) -> str:
    """Shortest text that reads back as the same float ("3" rather than "3.0")."""
    f = float(v)
    return str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)


def _act_token(activation: str, slope: float | None) -> str:
    return f"{activation}={_num(slope)}" if activation == "leaky_relu" and slope is not None else activation


def layer_token(layer: LayerSpec) -> str:
    """The canonical short-string token of one head layer."""
    if isinstance(layer, DenseSpec):
        parts = ["dense", str(layer.units), _act_token(layer.activation, layer.slope), layer.initializer]
        if layer.l2 is not None:
            parts.append(f"l2={_num(layer.l2)}")
        if layer.max_norm is not None:
            parts.append(f"maxnorm={_num(layer.max_norm)}")
        return ":".join(parts)
    if isinstance(layer, BatchNormSpec):
        extra = [f"{f.name}={_num(getattr(layer, f.name))}" for f in fields(layer)
                 if getattr(layer, f.name) != f.default]
        return ":".join(["batchnorm", *extra])
    if isinstance(layer, DropoutSpec):
        return f"dropout:{_num(layer.rate)}"
    if isinstance(layer, MaxoutSpec):
        return f"maxout:{layer.units}"
    if isinstance(layer, (FlattenSpec, GlobalAvgPoolSpec, GlobalMaxPoolSpec)):
        return _TYPE_OF[type(layer)]
    return _act_token(layer.activation, layer.slope)
