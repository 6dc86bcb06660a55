"""`reuse infer` on images: files and folders to encoded images, sent in chunks, printed with class names."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click

from reuse.cli.common import emit_json
from reuse.errors import InvalidInput

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")  # as images:DIR reads (reuse.data.images)
CHUNK_IMAGES = 32
CHUNK_BYTES = 16 * 1024 * 1024
MAX_FILES = 100_000
_ELEMENT = re.compile(r"input '[^']*': element (\d+): ")


def image_files(paths: tuple[str, ...]) -> list[Path] | None:
    """The image files the ``--input`` paths name (folders searched recursively, in sorted order); None when
    they name a .npy/.npz array file instead.

    Raises:
        InvalidInput: images mixed with array files, a file that is neither, or a folder without images.
    """
    kinds = [
        "image" if Path(p).is_dir() or Path(p).suffix.lower() in IMAGE_SUFFIXES else "array" for p in paths
    ]
    if all(k == "array" for k in kinds):
        return None
    if "array" in kinds:
        other = next(p for p, k in zip(paths, kinds, strict=True) if k == "array")
        raise InvalidInput(f"{other}: not an image ({', '.join(IMAGE_SUFFIXES)}) or a folder; give "
                           "either one .npy/.npz array file or images")
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
            continue
        inside = []
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            inside.extend(Path(root) / f for f in sorted(files) if f.lower().endswith(IMAGE_SUFFIXES))
            if len(found) + len(inside) > MAX_FILES:
                raise InvalidInput(f"more than {MAX_FILES} images under {p}; give a smaller folder")
        if not inside:
            raise InvalidInput(f"{p}: no images in this folder (files ending in {', '.join(IMAGE_SUFFIXES)})")
        found.extend(inside)
    return found


def _chunks(paths: list[Path]) -> Any:
    chunk: list[tuple[Path, bytes]] = []
    size = 0
    for p in paths:
        data = p.read_bytes()
        if chunk and (len(chunk) == CHUNK_IMAGES or size + len(data) > CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append((p, data))
        size += len(data)
    if chunk:
        yield chunk


def _naming_the_file(exc: InvalidInput, chunk: list[tuple[Path, bytes]]) -> InvalidInput:
    """The error of one element of a chunk, said of its file (``input 'x': element 3: ...`` -> ``PATH:
    ...``)."""
    found = _ELEMENT.match(str(exc))
    if found is None or int(found.group(1)) >= len(chunk):
        return exc
    return InvalidInput(f"{chunk[int(found.group(1))][0]}: {str(exc)[found.end():]}")


def infer_image_files(svc: Any, ref: str, paths: list[Path], *, top: int, out_path: str | None,
                      as_json: bool) -> None:
    """Run ``ref`` on the images at ``paths`` (a chunk per call) and print each image's best classes."""
    import numpy as np

    from reuse.serving.classes import top_classes

    outputs: list[list[Any]] = []
    sig = None
    rows: list[dict[str, Any]] = []
    for chunk in _chunks(paths):
        try:
            result = svc.infer_images(ref if sig is None else sig.ref, [data for _, data in chunk])
        except InvalidInput as exc:
            raise _naming_the_file(exc, chunk) from None
        sig = result.signature
        outputs.append(result.outputs)
        first = result.outputs[0]
        tops = top_classes(first, top, sig.class_names) if first.ndim == 2 else [[] for _ in chunk]
        rows.extend({"input": str(p), "top": [t.to_dict() for t in row]}
                    for (p, _), row in zip(chunk, tops, strict=True))
    assert sig is not None
    merged = {s.name: np.concatenate([o[i] for o in outputs]) for i, s in enumerate(sig.outputs)}
    if out_path:
        np.savez(out_path, **merged)
    if as_json:
        emit_json({"model": sig.ref, "images": rows, "outputs": {k: v.tolist() for k, v in merged.items()}})
        return
    if out_path:
        click.echo(f"Wrote the outputs of {sig.ref} for {len(paths)} image(s) to {out_path}")
        return
    if not rows[0]["top"]:  # not (rows, classes): show the arrays
        for name, arr in merged.items():
            click.echo(f"{name} {list(arr.shape)}:\n{arr}")
        return
    click.echo(f"{sig.ref}: {len(paths)} image(s)" + ("" if sig.class_names else " (no class names recorded; "
                                                      "classes by column index)"))
    for row in rows:
        best = ", ".join(f"{t['class'] or t['index']} {t['score']:.3f}" for t in row["top"])
        click.echo(f"  {row['input']}  {best}")
