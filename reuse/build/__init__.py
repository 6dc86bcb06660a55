"""New networks from the layers of stored ones: :mod:`reuse.build.plan` holds every check of a build that
reads no weight, :mod:`reuse.build.network` assembles it (copied layers, frozen, with their weights bit
for bit, and a head), :mod:`reuse.build.stage` puts a preprocessing stage in front of the reused layers."""

from __future__ import annotations

from reuse.build.network import BuiltNetwork, build_network, plan_preprocess
from reuse.build.plan import plan_build, plan_head

__all__ = ["BuiltNetwork", "build_network", "plan_build", "plan_head", "plan_preprocess"]
