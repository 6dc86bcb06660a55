"""Preprocessing specs: what a built model does to raw pixels before its reused layers
(``build --preprocess``).

Grammar (see docs/building.md)::

    spec    := step ("+" step)*
    step    := PRESET | FAMILY
             | "bgr"                              (RGB -> BGR: the channel order reversed)
             | "rescale:" VALUES [":" VALUES]     (x * SCALE + OFFSET; a scale written 1/D divides by D)
             | "normalize:" VALUES ":" VALUES     ((x - MEAN) / STD)
    VALUES  := NUMBER ("," NUMBER)*               (one value for every channel, or one per channel)
    PRESET  := tf | caffe | torch | none
    FAMILY  := a keras.applications family name (mobilenet_v2, resnet50, vgg16, densenet, efficientnet,
               ...): the preset that family's ``preprocess_input`` applies

The presets do what ``keras.applications.imagenet_utils.preprocess_input`` does in each mode, in the
same order, so a built model fed raw 0..255 pixels computes what the base computed on
``preprocess_input``'s output:

- ``tf``: x / 127.5 - 1 (pixels in [-1, 1])
- ``caffe``: RGB -> BGR, then minus the ImageNet mean 103.939, 116.779, 123.68 (BGR order), unscaled
- ``torch``: x / 255, then minus 0.485, 0.456, 0.406 and divided by 0.229, 0.224, 0.225
- ``none``: nothing (the base takes raw pixels, or carries its own preprocessing: EfficientNet,
  EfficientNetV2, ConvNeXt, MobileNetV3)

A spec parses to a :class:`PreprocessSpec`: its text as given and the elementwise operations it stands
for, which is what the Keras layer (:mod:`reuse.layers.preprocess`) stores and runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from reuse.errors import InvalidInput
from reuse.text import echo

MAX_SPEC_CHARS = 1000
MAX_STEPS = 16
MAX_CHANNELS = 64

IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
IMAGENET_RGB_MEAN = (0.485, 0.456, 0.406)
IMAGENET_RGB_STD = (0.229, 0.224, 0.225)

PRESETS: dict[str, str] = {
    "tf": "rescale:1/127.5:-1",
    "caffe": "bgr+normalize:103.939,116.779,123.68:1",
    "torch": "rescale:1/255+normalize:0.485,0.456,0.406:0.229,0.224,0.225",
    "none": "",
}
PRESET_MEANING = {
    "tf": "pixels scaled to [-1, 1]",
    "caffe": "BGR channel order, ImageNet mean subtracted, unscaled",
    "torch": "pixels scaled to [0, 1], then ImageNet mean and std per channel",
    "none": "raw pixels, or the base's own preprocessing layers",
}

# keras.applications family (and model) names -> the preset its preprocess_input applies (checked against
# keras/src/applications/*.py: each module's preprocess_input mode; "none" where preprocess_input is a
# pass-through because the model carries Rescaling/Normalization layers).
FAMILY_PRESETS: dict[str, str] = {
    "mobilenet": "tf", "mobilenet_v2": "tf", "mobilenet_v3": "none",
    "resnet": "caffe", "resnet50": "caffe", "resnet101": "caffe", "resnet152": "caffe",
    "resnet_v2": "tf", "resnet50_v2": "tf", "resnet101_v2": "tf", "resnet152_v2": "tf",
    "vgg": "caffe", "vgg16": "caffe", "vgg19": "caffe",
    "densenet": "torch", "densenet121": "torch", "densenet169": "torch", "densenet201": "torch",
    "efficientnet": "none", "efficientnet_v2": "none", "convnext": "none",
    "xception": "tf", "inception_v3": "tf", "inception_resnet_v2": "tf",
    "nasnet": "tf", "nasnet_mobile": "tf", "nasnet_large": "tf",
}
EXAMPLES = (
    "tf, caffe, torch, none, mobilenet_v2, resnet50, rescale:1/255, normalize:0.5:0.25 or bgr+rescale:1/255"
)

Op = tuple[str, tuple[float, ...]]  # ("mul" | "div" | "add" | "sub", per-channel values) or ("bgr", ())
OP_NAMES = ("mul", "div", "add", "sub", "bgr")


_SQUASHED = {k.replace("_", ""): k for k in FAMILY_PRESETS}
# Model names that only start like a family: EfficientNetV2B0, EfficientNetB3, ConvNeXtTiny, MobileNetV3Small.
_PREFIXES = ("efficientnetv2", "efficientnet", "convnext", "mobilenetv3")


def family_key(name: str) -> str | None:
    """The family a user's name stands for (``MobileNetV2``, ``mobilenet-v2``, ``resnet50v2``,
    ``EfficientNetB0``: any case, with or without ``_``/``-``), or None."""
    squashed = "".join(c for c in name.strip().lower() if c.isalnum())
    if squashed in _SQUASHED:
        return _SQUASHED[squashed]
    prefix = next((p for p in _PREFIXES if squashed.startswith(p)), None)
    return _SQUASHED[prefix] if prefix else None


@dataclass(frozen=True)
class PreprocessSpec:
    """A parsed spec: ``text`` as written (normalised), the presets it named, and its operations."""

    text: str
    ops: tuple[Op, ...]

    @property
    def empty(self) -> bool:
        return not self.ops

    def channel_counts(self) -> set[int]:
        """The channel counts the per-channel values name (1 means: every channel)."""
        return {len(v) for name, v in self.ops if name != "bgr"} - {1}

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.text, "ops": [[name, list(v)] for name, v in self.ops]}

    def describe(self) -> str:
        """``tf (x / 127.5 + -1)``: the text and what it computes."""
        if self.empty:
            return f"{self.text} (no operation)"
        return f"{self.text} ({describe_ops(self.ops)})"


def describe_ops(ops: tuple[Op, ...] | list) -> str:
    parts = []
    for name, values in ops:
        if name == "bgr":
            parts.append("RGB->BGR")
            continue
        if name == "add" and all(v < 0 for v in values):
            name, values = "sub", tuple(-v for v in values)
        shown = ",".join(f"{v:g}" for v in values)
        parts.append({"mul": "* ", "div": "/ ", "add": "+ ", "sub": "- "}[name] + shown)
    return "x " + " ".join(parts)


def spec_from_dict(d: Any) -> PreprocessSpec:
    """The spec a layer config or lineage entry recorded (``{"spec": ..., "ops": [[name, values], ...]}``).

    Raises:
        InvalidInput: not that shape, an unknown operation, or values that are not finite numbers.
    """
    if not isinstance(d, dict) or not isinstance(d.get("ops"), list):
        raise InvalidInput(f"preprocessing record {echo(d)}: expected {{'spec': TEXT, 'ops': [[NAME, "
                           f"VALUES]]}}")
    ops = []
    for item in d["ops"]:
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and item[0] in OP_NAMES
                and isinstance(item[1], (list, tuple))):
            raise InvalidInput(f"preprocessing operation {echo(item)}: expected [NAME, VALUES] with NAME one "
                               f"of {', '.join(OP_NAMES)}")
        values = tuple(_finite(v, str(item[0])) for v in item[1])
        if item[0] != "bgr" and not 1 <= len(values) <= MAX_CHANNELS:
            raise InvalidInput(f"preprocessing operation {item[0]} has {len(values)} values; expected 1 to "
                               f"{MAX_CHANNELS}")
        ops.append((str(item[0]), values))
    return PreprocessSpec(str(d.get("spec") or describe_ops(tuple(ops))), tuple(ops))


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"preprocessing {what}: {echo(value)} is not a finite number")
    return float(value)


def _number(text: str, step: str) -> tuple[str, float]:
    """("mul", v) for a plain number, ("div", d) for ``1/d``."""
    t = text.strip()
    divide = t.startswith("1/")
    try:
        value = float(t[2:] if divide else t)
    except ValueError:
        raise InvalidInput(f"invalid number {echo(text)} in preprocessing step {echo(step)}: expected "
                           "e.g. 0.5 or 1/255") from None
    if not math.isfinite(value) or (divide and value == 0):
        raise InvalidInput(f"invalid number {echo(text)} in preprocessing step {echo(step)}: expected "
                           "a finite number (and no division by zero)")
    return ("div" if divide else "mul"), value


def _values(text: str, step: str, *, allow_divide: bool) -> tuple[str, tuple[float, ...]]:
    parts = text.split(",")
    if not text.strip() or len(parts) > MAX_CHANNELS:
        raise InvalidInput(f"preprocessing step {echo(step)}: expected 1 to {MAX_CHANNELS} comma-separated "
                           "numbers (one for all channels, or one per channel)")
    kinds, values = zip(*(_number(p, step) for p in parts), strict=True)
    if len(set(kinds)) > 1 or (kinds[0] == "div" and not allow_divide):
        raise InvalidInput(f"preprocessing step {echo(step)}: write every value of a list the same way "
                           "(1/D divides, and only in a rescale scale)")
    return kinds[0], tuple(values)


def _step(token: str) -> tuple[list[Op], str]:
    """The operations of one step and its normalised text."""
    key, _, rest = token.partition(":")
    key = key.strip().lower()
    if not rest and key in PRESETS:
        return ([] if key == "none" else _parse_ops(PRESETS[key])), key
    family = family_key(key) if not rest else None
    if family is not None:
        preset = FAMILY_PRESETS[family]
        return ([] if preset == "none" else _parse_ops(PRESETS[preset])), family
    if key == "bgr" and not rest:
        return [("bgr", ())], "bgr"
    if key == "rescale" and rest:
        fields = rest.split(":")
        if len(fields) > 2:
            raise InvalidInput(f"preprocessing step {echo(token)}: expected rescale:SCALE[:OFFSET]")
        kind, scale = _values(fields[0], token, allow_divide=True)
        ops: list[Op] = [] if kind == "mul" and all(v == 1 for v in scale) else [(kind, scale)]
        if len(fields) == 2:
            _, offset = _values(fields[1], token, allow_divide=False)
            if any(v != 0 for v in offset):
                ops.append(("add", offset))
        return ops, token.strip()
    if key == "normalize" and rest:
        fields = rest.split(":")
        if len(fields) != 2:
            raise InvalidInput(f"preprocessing step {echo(token)}: expected normalize:MEAN:STD, e.g. "
                               "normalize:0.485,0.456,0.406:0.229,0.224,0.225")
        _, mean = _values(fields[0], token, allow_divide=False)
        _, std = _values(fields[1], token, allow_divide=False)
        if any(v <= 0 for v in std):
            raise InvalidInput(f"preprocessing step {echo(token)}: every STD must be above 0")
        ops = [("sub", mean)] if any(v != 0 for v in mean) else []
        if any(v != 1 for v in std):
            ops.append(("div", std))
        return ops, token.strip()
    if key in ("rescale", "normalize", "bgr"):
        want = {"rescale": "rescale:SCALE[:OFFSET]", "normalize": "normalize:MEAN:STD", "bgr": "bgr"}[key]
        raise InvalidInput(f"preprocessing step {echo(token)}: expected {want}")
    known = ", ".join(sorted(PRESETS)) + "; families " + ", ".join(sorted(FAMILY_PRESETS))
    raise InvalidInput(f"unknown preprocessing {echo(token)}: expected a preset ({known}), bgr, "
                       "rescale:SCALE[:OFFSET] or normalize:MEAN:STD")


def _parse_ops(text: str) -> list[Op]:
    out: list[Op] = []
    for token in text.split("+"):
        out.extend(_step(token)[0])
    return out


def parse_preprocess(text: str) -> PreprocessSpec:
    """Parse a preprocessing spec (see the module docstring).

    Raises:
        InvalidInput: an empty or over-long spec, an unknown preset or step, or a malformed number; the
            message lists what is accepted.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"empty preprocessing spec: expected e.g. {EXAMPLES}")
    if len(text) > MAX_SPEC_CHARS:
        raise InvalidInput(f"preprocessing spec of {len(text)} characters; the most is {MAX_SPEC_CHARS}")
    tokens = text.split("+")
    if len(tokens) > MAX_STEPS:
        raise InvalidInput(f"preprocessing spec with {len(tokens)} steps; the most is {MAX_STEPS}")
    ops: list[Op] = []
    names = []
    for token in tokens:
        if not token.strip():
            raise InvalidInput(f"empty step in preprocessing spec {echo(text)}: steps are joined with '+'")
        step_ops, name = _step(token)
        ops.extend(step_ops)
        names.append(name)
    if "none" in names and len(names) > 1:
        raise InvalidInput(f"preprocessing spec {echo(text)}: 'none' cannot be combined with other steps")
    return PreprocessSpec("+".join(names), tuple(ops))


def check_channels(spec: PreprocessSpec, channels: int | None, where: str) -> None:
    """Refuse a spec whose per-channel values or channel swap do not fit ``channels``.

    Raises:
        InvalidInput: names the spec, the values' count and the input's channels.
    """
    if spec.empty:
        return
    if channels is None:
        raise InvalidInput(f"preprocessing {echo(spec.text)} needs a known channel count (the last axis) of "
                           f"{where}")
    for name, values in spec.ops:
        if name == "bgr" and channels != 3:
            raise InvalidInput(f"preprocessing {echo(spec.text)} swaps RGB to BGR, which needs 3 channels; "
                               f"{where} has {channels}")
        if name != "bgr" and len(values) not in (1, channels):
            raise InvalidInput(f"preprocessing {echo(spec.text)} gives {len(values)} values per channel "
                               f"({name} {','.join(f'{v:g}' for v in values)}), but {where} has {channels} "
                               f"channel(s); give one value or {channels}")
