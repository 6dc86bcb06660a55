"""Built-in data sets, available offline: ``builtin:digits`` and ``builtin:blobs``.

Spec: ``builtin:NAME[?key=value&key=value...]``. Keys:

- ``split``: ``train`` (default), ``test`` or ``all``. The split is fixed: a seeded shuffle whose first
  ``test_size`` part (default 0.5) is the test set.
- ``classes``: keep only these labels, e.g. ``5-9`` or ``0,2,4`` or ``0-2,7``.
- ``per_class``: keep at most this many samples of each class (the first ones of the seeded shuffle).
- ``relabel``: ``1``/``true`` maps the kept labels to 0..k-1 in order and records the originals as class
  names (``classes=5-9&relabel=1`` gives labels 0..4 named "5".."9"). Labels are never remapped silently.
- ``seed``: the split's seed (default 0); ``test_size``: the test fraction (default 0.5).

``digits`` is scikit-learn's 8x8 handwritten digits (1797 samples, 64 features scaled to [0, 1], 10
classes). ``blobs`` is ``make_blobs(n_samples=1000, centers=3, n_features=2, cluster_std=2.0,
random_state=2)``: the classic greedy layer-wise pretraining set, 500/500 train/test.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import numpy as np

from reuse.data.dataset import Dataset, relabel
from reuse.errors import InvalidInput
from reuse.text import echo

PREFIX = "builtin:"
NAMES = ("digits", "blobs")
KEYS = ("split", "classes", "per_class", "relabel", "seed", "test_size")
BLOBS_RANDOM_STATE = 2


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    body = spec[len(PREFIX):]
    name, _, query = body.partition("?")
    if name not in NAMES:
        raise InvalidInput(f"unknown built-in data set {echo(name)} in {echo(spec)}: expected one of "
                           f"{', '.join(PREFIX + n for n in NAMES)}")
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in KEYS:
            raise InvalidInput(f"unknown option {echo(key)} in {echo(spec)}: expected one of "
                               f"{', '.join(KEYS)}")
        params[key] = value
    return name, params


def with_split(spec: str, split: str) -> str:
    """``spec`` with its ``split`` option set to ``split`` (other options kept, in order)."""
    name, params = parse_spec(spec)
    params = {**params, "split": split}
    return f"{PREFIX}{name}?" + "&".join(f"{k}={v}" for k, v in params.items())


def parse_classes(text: str, spec: str) -> list[int]:
    """``5-9`` or ``0,2,4`` or ``0-2,7`` as a sorted list of ints."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        try:
            if dash:
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                out.update(range(a, b + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise InvalidInput(f"invalid classes {echo(text)} in {echo(spec)}: expected e.g. 5-9 "
                               "or 0,2,4") from None
    return sorted(out)


def _int(params: dict[str, str], key: str, default: int, spec: str, minimum: int = 0) -> int:
    raw = params.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"invalid {key}={echo(raw)} in {echo(spec)}: expected an integer") from None
    if value < minimum:
        raise InvalidInput(f"invalid {key}={echo(raw)} in {echo(spec)}: expected at least {minimum}")
    return value


def _raw(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    if name == "digits":
        d = datasets.load_digits()
        return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)
    x, y = datasets.make_blobs(n_samples=1000, centers=3, n_features=2, cluster_std=2.0,
                               random_state=BLOBS_RANDOM_STATE)
    return x.astype(np.float32), y.astype(np.int64)


def load(spec: str) -> Dataset:
    """The built-in set ``spec`` names, filtered and split as its options say."""
    name, params = parse_spec(spec)
    split = params.get("split", "train")
    if split not in ("train", "test", "all"):
        raise InvalidInput(f"invalid split={echo(split)} in {echo(spec)}: expected train, test or all")
    seed = _int(params, "seed", 0, spec)
    try:
        test_size = float(params.get("test_size", "0.5"))
    except ValueError:
        test_size = -1.0
    if not 0.0 < test_size < 1.0:
        raise InvalidInput(f"invalid test_size in {echo(spec)}: expected a fraction in (0, 1)")
    x, y = _raw(name)
    # One seeded shuffle fixes the split: its first test_size part is the test set.
    order = np.empty(len(y), dtype=np.int64)
    order[np.random.default_rng(seed).permutation(len(y))] = np.arange(len(y))
    is_test = order < int(round(len(y) * test_size))
    keep = np.ones(len(y), dtype=bool) if split == "all" else (is_test if split == "test" else ~is_test)
    if "classes" in params:
        wanted = parse_classes(params["classes"], spec)
        missing = sorted(set(wanted) - set(np.unique(y).tolist()))
        if missing:
            raise InvalidInput(f"classes {missing} do not exist in {PREFIX}{name} "
                               f"(classes: {np.unique(y).tolist()})")
        keep &= np.isin(y, wanted)
    if "per_class" in params:
        per_class = _int(params, "per_class", 0, spec, minimum=1)
        rank = np.full(len(y), np.iinfo(np.int64).max)
        for c in np.unique(y[keep]):
            idx = np.flatnonzero(keep & (y == c))
            idx = idx[np.argsort(order[idx], kind="stable")]
            rank[idx] = np.arange(len(idx))
        keep &= rank < per_class
    index = np.flatnonzero(keep)
    # Shuffled order, so a prefix of the set (e.g. a validation split) holds every class.
    index = index[np.argsort(order[index], kind="stable")]
    ds = Dataset(x=x[index], y=y[index], source=spec)
    if params.get("relabel", "").lower() in ("1", "true", "yes"):
        ds = relabel(ds)
    elif params.get("relabel", "").lower() not in ("", "0", "false", "no"):
        raise InvalidInput(f"invalid relabel={echo(params['relabel'])} in {echo(spec)}: expected 1 or 0")
    return ds
