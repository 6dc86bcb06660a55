"""The advisor for callers that hold plain values (the facade's ``Service.advise``, hence the CLI and
the advise job): the options are checked together before any data is read (:func:`advise_options`),
then the data are loaded, the advice runs (:func:`reuse.advise.advice.advise`), and its plot and the
registrations asked for are made (:func:`advise_stored`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reuse.advise.advice import AdviseConfig
from reuse.advise.plan import expand_blocks, split_scopes
from reuse.advise.plot import check_plot_path
from reuse.errors import InvalidInput
from reuse.heads import HeadSpec, read_head
from reuse.store import check_name


@dataclass(frozen=True)
class AdviseOptions:
    """What :func:`advise_options` made of the options: the head, the scopes, the measuring config."""

    head: HeadSpec
    scopes: list[str] | None
    config: AdviseConfig


def advise_options(*, head: str | None = None, head_file: str | None = None,
                   scopes: str | list[str] | None = None, blocks: str | None = None, val: str | None = None,
                   val_split: float | None = None, register: str | None = None,
                   register_ensemble: str | None = None,
                   plot: str | None = None, **config: Any) -> AdviseOptions:
    """Check the options of one advice that need no data, and return them parsed.

    ``config`` holds :class:`AdviseConfig` field values (``None`` values are left at their defaults).

    Raises:
        InvalidName: a bad ``register`` or ``register_ensemble`` name. InvalidInput: options that
        contradict each other, a plot path that cannot be written, a malformed block pattern or head.
    """
    if register is not None:
        check_name(register)
    if register_ensemble is not None:
        check_name(register_ensemble)
        seeds = config.get("seeds")
        if seeds is not None and seeds < 2:
            raise InvalidInput(f"--register-ensemble needs --seeds 2 or more; got --seeds {seeds}")
    if plot is not None:
        check_plot_path(plot)
    if val is not None and val_split is not None:
        raise InvalidInput("give validation data or a validation split, not both")
    if isinstance(scopes, str):
        scopes = split_scopes(scopes)
    if blocks is not None:
        if scopes is not None:
            raise InvalidInput("give either scopes or a block pattern, not both")
        expand_blocks(blocks)  # a malformed pattern is refused before the data are read
    spec = read_head(head, head_file)
    given = {k: v for k, v in {**config, "val_split": val_split}.items() if v is not None}
    return AdviseOptions(head=spec, scopes=scopes, config=AdviseConfig(**given))
