"""New networks from the layers of stored ones.

:mod:`reuse.build.network` plans a build with every check that reads no weight (:func:`plan_build`),
then assembles copies of the selected layers, frozen with their weights, under a head
(:func:`build_network`); :mod:`reuse.build.stage` is the preprocessing stage ``--preprocess`` puts in
front of them (:func:`plan_preprocess` checks it). The package exports what callers use.
"""

from __future__ import annotations

from reuse.build.network import BuiltNetwork, build_network, plan_build, plan_preprocess

__all__ = ["BuiltNetwork", "build_network", "plan_build", "plan_preprocess"]
