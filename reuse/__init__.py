"""reuse: build new Keras networks from the lower layers of ones you already trained."""

from __future__ import annotations

__version__ = "0.1.0"
