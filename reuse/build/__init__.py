"""New networks from the layers of stored ones: :mod:`reuse.build.network` plans a build (every check
that reads no weight) and assembles it (copied layers, frozen, with their weights bit for bit, and a
head); :mod:`reuse.build.stage` puts a preprocessing stage in front of the reused layers."""

from __future__ import annotations

from reuse.build.network import BuiltNetwork, build_network, plan_build, plan_head, plan_preprocess

__all__ = ["BuiltNetwork", "build_network", "plan_build", "plan_head", "plan_preprocess"]
