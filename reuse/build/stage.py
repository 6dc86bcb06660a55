"""Where a build meets preprocessing: the stage ``--preprocess`` puts in front of the reused layers, and
the warning when a keras.applications base is reused without the preprocessing it expects.

Every check here reads no weight, so a build job's validator runs it before the job starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reuse.errors import InvalidInput
from reuse.graph.applications import PREPROCESSING_CLASSES, BaseFamily, recognise
from reuse.graph.arch import Architecture
from reuse.graph.subgraph import Plan
from reuse.preprocess_spec import PRESET_MEANING, PreprocessSpec, check_channels, parse_preprocess
from reuse.text import echo


@dataclass(frozen=True)
class StagePlan:
    """What a build does about preprocessing.

    ``spec``: the parsed ``--preprocess`` (None when not given); ``entry``: the index of the input it goes
    in front of (None when there is no stage: not given, or ``none``); ``family``: the base's
    keras.applications family, if recognised; ``warnings``: one line each, for the user.
    """

    spec: PreprocessSpec | None
    entry: int | None
    family: BaseFamily | None
    warnings: tuple[str, ...] = ()

    def lineage(self, input_names: Sequence[str]) -> dict[str, Any] | None:
        """The build record's ``preprocess`` entry: ``{"spec", "ops", "input"}`` or None."""
        if self.spec is None:
            return None
        return {**self.spec.to_dict(), "input": input_names[self.entry] if self.entry is not None else None}


def arch_rows(arch: Architecture) -> list[tuple[str, str]]:
    """``(path, class_name)`` of every layer and nested model, in display order."""
    rows = []
    for path in arch.order or tuple(arch.names):
        c = arch.container(path)
        rows.append((path, c.class_name if c is not None else arch.node(path).class_name))
    return rows


def _fmt(shape: Sequence[Any]) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def plan_stage(arch: Architecture, plan: Plan, specs: Sequence[tuple[str, tuple, str]], text: str | None,
               base: str) -> StagePlan:
    """Check ``--preprocess`` against the new network's inputs and the base's family.

    Args:
        arch, plan: the base's architecture and the selection (see reuse.build.plan_build).
        specs: (input name, shape without batch, dtype) of each input of the new network.
        text: the ``--preprocess`` spec, or None.
        base: the base's reference, for messages.

    Raises:
        InvalidInput: an unknown preset or malformed spec; a stage for a selection with several inputs,
            or for an input that is not an image (height, width, channels) of floats; per-channel
            values that do not fit its channels.
    """
    family = recognise(arch_rows(arch))
    reads_base_input = [i for i, e in enumerate(plan.entries) if e.ref.input]
    if text is None:
        warnings = []
        if family is not None and family.needs and reads_base_input:
            warnings.append(
                f"{base} looks like keras.applications {family.architecture} (layers "
                f"{', '.join(family.evidence)}), which expects {family.needs} preprocessing "
                f"({PRESET_MEANING[family.needs]}); this build feeds its layers the raw input: pass "
                f"--preprocess {family.suggestion} to put that stage in the model (or --preprocess none if "
                "your data is already preprocessed)")
        return StagePlan(None, None, family, tuple(warnings))
    spec = parse_preprocess(text)
    if spec.empty:
        return StagePlan(spec, None, family)
    if len(specs) != 1:
        raise InvalidInput(f"a preprocessing stage goes in front of one image input; the selection reads "
                           f"{len(specs)} ({', '.join(e.source for e in plan.entries)})")
    name, shape, dtype = specs[0]
    if len(shape) != 3 or not str(dtype).startswith(("float", "bfloat")):
        raise InvalidInput(f"preprocessing {echo(spec.text)} is for images: the new input {name} has shape "
                           f"{_fmt(shape)} of {dtype}, expected (height, width, channels) of floats")
    check_channels(spec, shape[-1], f"the input {name} (shape {_fmt(shape)})")
    warnings = []
    if not reads_base_input:
        warnings.append(f"the selection starts at the output of {plan.entries[0].source}, not at an input of "
                        f"{base}: the preprocessing stage {spec.text} is applied to that tensor")
    if family is not None and family.included and any(
            arch.node(p).class_name in PREPROCESSING_CLASSES for p in plan.layers):
        warnings.append(f"{base} ({family.architecture}) carries its own preprocessing and the "
                        f"selection copies it: --preprocess {spec.text} is applied before it, so twice")
    elif family is not None and family.needs and spec.ops != parse_preprocess(family.needs).ops:
        warnings.append(f"{base} looks like keras.applications {family.architecture}, which expects "
                        f"{family.needs} preprocessing ({PRESET_MEANING[family.needs]}); --preprocess "
                        f"{spec.text} differs (--preprocess {family.suggestion} matches it)")
    return StagePlan(spec, 0, family, tuple(warnings))
