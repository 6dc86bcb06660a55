"""``reuse quickstart`` (``make run``): the whole product on real data in about a minute.

Six steps over the service facade: register the shipped example network (``models/digits-base``),
preview a scope, build a network for a related task from its reused layers, train and fine-tune it,
compare with the same architecture trained from scratch, then serve it over gRPC and call it with
``reuse.client``. See :func:`run_quickstart`.
"""

from __future__ import annotations

from reuse.quickstart.plan import QuickstartOptions
from reuse.quickstart.run import QuickstartResult, run_quickstart

__all__ = ["QuickstartOptions", "QuickstartResult", "run_quickstart"]
