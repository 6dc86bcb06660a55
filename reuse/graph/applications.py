"""Recognising a ``keras.applications`` architecture in a model, and the preprocessing it expects.

:func:`recognise` reads only layer paths and class names (``[(path, class_name), ...]`` in the model's
order; nested models' layers by path), so it works on a model being registered and on a stored
architecture alike. Each family is known by a few layers of its stem and first block, with their classes
(``Conv1`` a Conv2D, ``bn_Conv1`` a BatchNormalization, ``expanded_conv_depthwise`` a DepthwiseConv2D for
MobileNetV2), the first of them among the first layers of its model: so a base whose top was renamed,
replaced or cut off, or one used as a nested backbone, is still recognised; one that only borrowed a layer
name is not. Depth variants (ResNet50/101/152, DenseNet121/169/201, VGG16/19) are told apart by their
block counts when those layers are present.

A family's preset is the mode of its ``preprocess_input`` (keras/src/applications/*.py; see
:data:`reuse.preprocess_spec.FAMILY_PRESETS`). A model carries its own preprocessing when a Rescaling,
Normalization or reuse Preprocess layer comes before the stem (EfficientNet always; MobileNetV3,
EfficientNetV2 and ConvNeXt unless built with ``include_preprocessing=False``; any base a user put such
a layer in front of): it then needs nothing more.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reuse.preprocess_spec import FAMILY_PRESETS, PRESET_MEANING, family_key

PREPROCESSING_CLASSES = frozenset({"Rescaling", "Normalization", "Preprocess", "reuse>Preprocess"})
STEM_WITHIN = 8  # the first marker must be among the first layers of its model (input layers not counted)
Row = tuple[str, str]  # (path, class_name)


@dataclass(frozen=True)
class _Family:
    key: str  # a key of FAMILY_PRESETS
    architecture: str
    markers: tuple[tuple[str, str], ...]  # (leaf name regex, class name), the first one the stem
    absent: tuple[str, ...] = ()  # leaf name regexes that rule the family out
    preset_without_own: str | None = None  # the preset when a base that includes its preprocessing lacks it
    variant: Callable[[set[str]], str | None] | None = None


def _count(names: set[str], pattern: str) -> int:
    rx = re.compile(pattern)
    return sum(1 for n in names if rx.fullmatch(n))


def _by_blocks(stage: str, table: dict[int, str]) -> Callable[[set[str]], str | None]:
    def variant(names: set[str]) -> str | None:
        return table.get(_count(names, stage))

    return variant


def _vgg(names: set[str]) -> str | None:
    if "block5_conv4" in names or "block4_conv4" in names or "block3_conv4" in names:
        return "VGG19"
    return "VGG16" if "block5_conv3" in names else None


def _mobilenet_v3(names: set[str]) -> str | None:
    if "expanded_conv_14_project" in names:
        return "MobileNetV3Large"
    if "expanded_conv_10_project" in names:
        return "MobileNetV3Small"
    return None


_RESNET = {6: "50", 23: "101", 36: "152"}
FAMILIES: tuple[_Family, ...] = (
    _Family("convnext", "ConvNeXt",
            ((r".+_stem", "Sequential"), (r".+_stage_0_block_0_depthwise_conv", "Conv2D")),
            preset_without_own="torch"),
    _Family("efficientnet", "EfficientNet",
            (("stem_conv", "Conv2D"), ("stem_bn", "BatchNormalization"),
             ("block1a_dwconv", "DepthwiseConv2D")),
            preset_without_own="torch"),
    _Family("efficientnet_v2", "EfficientNetV2",
            (("stem_conv", "Conv2D"), ("stem_bn", "BatchNormalization"), ("block1a_project_conv", "Conv2D")),
            absent=("block1a_dwconv", "stem_conv_pad"), preset_without_own="tf"),
    _Family("mobilenet_v3", "MobileNetV3",
            (("conv", "Conv2D"), ("conv_bn", "BatchNormalization"),
             ("expanded_conv_depthwise", "DepthwiseConv2D"),
             ("expanded_conv_project_bn", "BatchNormalization")), preset_without_own="tf",
            variant=_mobilenet_v3),
    _Family("mobilenet_v2", "MobileNetV2",
            (("Conv1", "Conv2D"), ("bn_Conv1", "BatchNormalization"),
             ("expanded_conv_depthwise", "DepthwiseConv2D"))),
    _Family("mobilenet", "MobileNet",
            (("conv1", "Conv2D"), ("conv1_bn", "BatchNormalization"), ("conv_dw_1", "DepthwiseConv2D"),
             ("conv_pw_1", "Conv2D"))),
    _Family("resnet_v2", "ResNetV2",
            (("conv1_conv", "Conv2D"), ("conv2_block1_preact_bn", "BatchNormalization")),
            variant=_by_blocks(r"conv4_block\d+_1_conv", {k: f"ResNet{v}V2" for k, v in _RESNET.items()})),
    _Family("densenet", "DenseNet",
            (("conv1_conv", "Conv2D"), ("conv1_bn", "BatchNormalization"),
             ("conv2_block1_concat", "Concatenate")),
            variant=_by_blocks(r"conv4_block\d+_concat",
                               {24: "DenseNet121", 32: "DenseNet169", 48: "DenseNet201"})),
    _Family("resnet", "ResNet",
            (("conv1_conv", "Conv2D"), ("conv1_bn", "BatchNormalization"), ("conv2_block1_0_conv", "Conv2D"),
             ("conv2_block1_add", "Add")),
            absent=(r"conv2_block1_preact_bn",),
            variant=_by_blocks(r"conv4_block\d+_1_conv", {k: f"ResNet{v}" for k, v in _RESNET.items()})),
    _Family("xception", "Xception",
            (("block1_conv1", "Conv2D"), ("block1_conv1_bn", "BatchNormalization"),
             ("block2_sepconv1", "SeparableConv2D"))),
    _Family("vgg", "VGG",
            (("block1_conv1", "Conv2D"), ("block1_conv2", "Conv2D"), ("block1_pool", "MaxPooling2D")),
            absent=("block1_conv1_bn",), variant=_vgg),
    _Family("nasnet", "NASNet",
            (("stem_conv1", "Conv2D"), ("stem_bn1", "BatchNormalization"),
             ("reduction_conv_1_stem_1", "Conv2D"))),
    _Family("inception_resnet_v2", "InceptionResNetV2",
            ((r"conv2d(_\d+)?", "Conv2D"), ("mixed_5b", "Concatenate"), ("block35_1_mixed", "Concatenate"))),
    _Family("inception_v3", "InceptionV3",
            ((r"conv2d(_\d+)?", "Conv2D"), ("mixed0", "Concatenate"), ("mixed1", "Concatenate"))),
)


@dataclass(frozen=True)
class BaseFamily:
    """A recognised keras.applications architecture and what its inputs must be.

    ``preset``: the preprocessing its layers were trained to expect, as a spec (``tf``, ``caffe``,
    ``torch``); ``included``: the model carries it (then nothing more is needed). ``container``: the
    path of the nested model holding it ("" at the top level); ``evidence``: the layers that told.
    """

    family: str
    architecture: str
    preset: str
    included: bool
    container: str = ""
    evidence: tuple[str, ...] = field(default_factory=tuple)

    @property
    def needs(self) -> str | None:
        """The preset its inputs still need (None: none)."""
        return None if self.included or self.preset == "none" else self.preset

    @property
    def suggestion(self) -> str:
        """What to pass to ``--preprocess``: the family's name when it stands for the needed preset."""
        need = self.needs or "none"
        for name in (family_key(self.architecture), self.family):
            if name is not None and FAMILY_PRESETS.get(name) == need:
                return name
        return need

    def describe(self) -> str:
        """What its inputs must be: ``tf preprocessing (pixels scaled to [-1, 1]), as keras.applications
        MobileNetV2``, or ``raw pixels: ...`` when the model carries its preprocessing."""
        where = f" (nested model {self.container})" if self.container else ""
        if self.included:
            return f"raw pixels: keras.applications {self.architecture}{where} with its preprocessing layers"
        return f"{self.preset} preprocessing ({PRESET_MEANING[self.preset]}), as keras.applications " \
               f"{self.architecture}{where}"

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "architecture": self.architecture, "preset": self.preset,
                "included": self.included, "needs": self.needs, "suggestion": self.suggestion,
                "container": self.container, "evidence": list(self.evidence)}


def base_family_of(d: Any) -> BaseFamily | None:
    """A BaseFamily from its ``to_dict()`` (stored metadata), or None for anything else."""
    if not isinstance(d, dict) or not all(
        isinstance(d.get(k), str) for k in ("family", "architecture", "preset")
    ):
        return None
    return BaseFamily(d["family"], d["architecture"], d["preset"], bool(d.get("included")),
                      str(d.get("container") or ""), tuple(str(x) for x in d.get("evidence") or ()))


def _groups(rows: Sequence[Row]) -> dict[str, list[Row]]:
    """Rows by the path of the model holding them ("" the top level), each as (leaf name, class)."""
    out: dict[str, list[Row]] = {}
    for path, cls in rows:
        parent, _, leaf = path.rpartition("/")
        out.setdefault(parent, []).append((leaf, cls))
    return out


def _match(family: _Family, group: list[Row]) -> list[str] | None:
    names = [n for n, cls in group if cls != "InputLayer"]
    classes = {n: cls for n, cls in group}
    found = []
    for pattern, cls in family.markers:
        rx = re.compile(pattern)
        hit = next((n for n in names if rx.fullmatch(n) and classes[n] == cls), None)
        if hit is None:
            return None
        found.append(hit)
    if names.index(found[0]) >= STEM_WITHIN:
        return None
    name_set = set(names)
    if any(_count(name_set, a) for a in family.absent):
        return None
    return found


def _has_preprocessing_before(group: list[Row], stop: str) -> bool:
    for name, cls in group:
        if name == stop:
            return False
        if cls in PREPROCESSING_CLASSES:
            return True
    return False


def recognise(rows: Sequence[Row]) -> BaseFamily | None:
    """The keras.applications family of a model, from its ``(path, class_name)`` rows in model order
    (the top level first, then each nested model's layers by path); None when none is recognised.
    The top level is tried first, then nested models in order."""
    groups = _groups(rows)
    for container, group in groups.items():
        for family in FAMILIES:
            found = _match(family, group)
            if found is None:
                continue
            included = _has_preprocessing_before(group, found[0]) or _outer_preprocessing(groups, container)
            preset = FAMILY_PRESETS[family.key]
            if preset == "none":  # a base that includes its preprocessing; without it, what it then needs
                preset = "none" if included else (family.preset_without_own or "none")
            architecture = (
                family.variant({n for n, _ in group}) if family.variant else None
            ) or family.architecture
            return BaseFamily(family.key, architecture, preset, included, container, tuple(found))
    return None


def _outer_preprocessing(groups: dict[str, list[Row]], container: str) -> bool:
    """Whether a model holding ``container`` has a preprocessing layer before it."""
    while container:
        parent, _, leaf = container.rpartition("/")
        if _has_preprocessing_before(groups.get(parent, []), leaf):
            return True
        container = parent
    return False


def rows_of_meta(meta: dict[str, Any]) -> list[Row]:
    """``(path, class_name)`` rows from a version's metadata (``layers`` and ``nested_layers``)."""
    rows = [
        (str(x.get("name")), str(x.get("class_name")))
        for x in meta.get("layers") or []
        if isinstance(x, dict)
    ]
    rows += [(str(x.get("path")), str(x.get("class_name"))) for x in meta.get("nested_layers") or []
             if isinstance(x, dict)]
    return rows
