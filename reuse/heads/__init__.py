"""Heads: the new layers put on top of reused ones.

:mod:`reuse.heads.spec` holds the specs (frozen dataclasses, no Keras), :mod:`reuse.heads.parse` parses
them from text (``gap,dense:64:relu``), a JSON/YAML file or either form's text, :mod:`reuse.heads.layers`
builds their Keras layers. The package exports what callers use.
"""

from __future__ import annotations

from reuse.heads.parse import (
    MAX_HEAD_FILE_BYTES,
    head_from_dict,
    head_from_text,
    is_head_document,
    load_head_file,
    parse_head,
    read_head,
)
from reuse.heads.spec import HeadSpec, LayerSpec

__all__ = ["MAX_HEAD_FILE_BYTES", "HeadSpec", "LayerSpec", "head_from_dict", "head_from_text",
           "is_head_document", "load_head_file", "parse_head", "read_head"]
