"""The client side of a ``reuse serve`` server (an adapter, like :mod:`reuse.cli` and :mod:`reuse.grpc`).

- :class:`ReuseClient` (:mod:`reuse.remote.client`): the gRPC calls, answered with domain types.
- :class:`RemoteService` (:mod:`reuse.remote.service`): the :class:`reuse.service.protocol.Facade` over the
  client, which the CLI uses with ``--server``.
- :mod:`reuse.remote.jobs`: following server jobs (data uploads, training events, outcomes).
"""

from __future__ import annotations

from reuse.remote.client import ReuseClient
from reuse.remote.service import RemoteService

__all__ = ["RemoteService", "ReuseClient"]
