"""Every Keras layer reuse defines, registered for Keras' deserialiser on import.

``import reuse.layers`` is the one import a plain-Keras user needs before
``keras.saving.load_model`` (safe mode) opens a file reuse wrote: a model with a preprocessing stage
(``reuse>Preprocess``), a Maxout head (``reuse>Maxout``) or an ensemble (``reuse>EnsembleCombine``).
The store's loader and the graph replay import it too.
"""

from __future__ import annotations

from reuse.layers.ensemble_combine import EnsembleCombine
from reuse.layers.maxout import Maxout
from reuse.layers.preprocess import Preprocess

__all__ = ["EnsembleCombine", "Maxout", "Preprocess"]
