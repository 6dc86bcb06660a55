"""Ensemble members: parsing ``A:1,B:3``, loading each from the store, and checking they agree."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from reuse.data import output_kind
from reuse.data.checks import OutputKind
from reuse.errors import IncompatibleShapes, InvalidInput, NotFound
from reuse.store import ModelInfo, ModelStore
from reuse.text import echo

MAX_MEMBERS = 64


@dataclass
class Member:
    """One member: its store info, its Keras model (loaded in safe mode) and its output kind."""

    info: ModelInfo
    model: Any
    kind: OutputKind

    @property
    def ref(self) -> str:
        return self.info.ref


def parse_members(text: str | list[str]) -> list[str]:
    """``"a:1,b:3"`` (or a list of refs) as a list of refs, refusing empty entries.

    Raises:
        InvalidInput: fewer than two members, an empty entry, or more than MAX_MEMBERS.
    """
    refs = [r.strip() for r in text.split(",")] if isinstance(text, str) else [str(r).strip() for r in text]
    if any(not r for r in refs):
        raise InvalidInput(f"members {echo(text)}: an empty entry; expected "
                           "NAME[:VERSION],NAME[:VERSION],...")
    if len(refs) < 2:
        raise InvalidInput(f"an ensemble needs at least two members; got {len(refs)}")
    if len(refs) > MAX_MEMBERS:
        raise InvalidInput(f"an ensemble takes at most {MAX_MEMBERS} members; got {len(refs)}")
    return refs


def parse_weights(text: str | list[float] | None, n: int) -> list[float]:
    """Member weights: ``"0.5,0.3,0.2"`` (or a list), one per member, non-negative, with a positive sum;
    returned normalised to sum to 1. None gives equal weights.

    Raises:
        InvalidInput: the wrong count, a value that is not a finite number, a negative one, or a zero sum.
    """
    if text is None or text == "":
        return [1.0 / n] * n
    raw = [w.strip() for w in text.split(",")] if isinstance(text, str) else list(text)
    values: list[float] = []
    for w in raw:
        try:
            v = float(w)
        except (TypeError, ValueError):
            raise InvalidInput(f"weight {echo(w)} is not a number; expected one non-negative number "
                               "per member") from None
        if not math.isfinite(v) or v < 0:
            raise InvalidInput(f"weight {echo(w)}: expected a finite non-negative number")
        values.append(v)
    if len(values) != n:
        raise InvalidInput(f"{len(values)} weights for {n} members; expected one per member")
    total = sum(values)
    if total <= 0:
        raise InvalidInput("the weights sum to 0; expected a positive sum")
    return [v / total for v in values]


def _inputs(model: Any) -> list[tuple[str, tuple, str]]:
    return [(str(t.name), tuple(t.shape), str(t.dtype)) for t in model.inputs]


def _describe(inputs: list[tuple[str, tuple, str]]) -> str:
    return ", ".join(f"{n} {list(s)} {d}" for n, s, d in inputs)


def check_agreement(members: list[Member]) -> None:
    """Every member takes the first one's inputs (names, shapes, dtypes) and gives its output (shape,
    kind, and for classifiers the recorded class names).

    Raises:
        IncompatibleShapes: inputs or output shapes differ. InvalidInput: output kinds or class names differ.
    """
    first = members[0]
    ins = _inputs(first.model)
    for m in members[1:]:
        got = _inputs(m.model)
        if got != ins:
            raise IncompatibleShapes(f"member {m.ref} takes inputs ({_describe(got)}); member "
                                     f"{first.ref} takes ({_describe(ins)}); ensemble members must take the "
                                     "same inputs")
        if tuple(m.model.output_shape) != tuple(first.model.output_shape):
            raise IncompatibleShapes(f"member {m.ref} gives output shape "
                                     f"{list(m.model.output_shape)}; member {first.ref} gives "
                                     f"{list(first.model.output_shape)}")
        if m.kind != first.kind:
            what = {"multiclass": "class scores", "binary": "a sigmoid probability",
                    "regression": "regression values"}
            a = f"{what[m.kind.kind]}{' (logits)' if m.kind.from_logits else ''}"
            b = f"{what[first.kind.kind]}{' (logits)' if first.kind.from_logits else ''}"
            raise InvalidInput(f"member {m.ref} outputs {a}; member {first.ref} outputs {b}; their outputs "
                               "cannot be averaged")
        if first.kind.kind != "regression" and (m.info.class_names or None) != (
            first.info.class_names or None
        ):
            raise InvalidInput(f"member {m.ref} has class names {m.info.class_names}; member {first.ref} has "
                               f"{first.info.class_names}; ensemble members must predict the same classes")


def load_members(store: ModelStore, refs: list[str]) -> list[Member]:
    """Each member from the store (checksums verified, safe mode), checked to agree with the first.

    Raises:
        NotFound: a member is not in the store. InvalidInput: a member given twice, a member with
        several outputs, or members that disagree (see :func:`check_agreement`). UnsafeModel: Lambda layers.
    """
    resolved = []
    for r in refs:
        try:
            resolved.append(str(store.resolve(r)))
        except NotFound as exc:
            raise NotFound(f"member {echo(r)}: {exc}") from exc
    seen: set[str] = set()
    for r in resolved:
        if r in seen:
            raise InvalidInput(f"member {r} is given twice; give each member once (use weights to count "
                               "one more)")
        seen.add(r)
    members = []
    for r in resolved:
        info = store.info(r)
        model = store.load(r)
        try:
            kind = output_kind(model)
        except InvalidInput as exc:
            raise InvalidInput(f"member {r}: {exc}") from exc
        members.append(Member(info, model, kind))
    check_agreement(members)
    return members
