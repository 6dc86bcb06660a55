"""``reuse.client.ReuseClient``: the documented name of the Python gRPC client, kept for user code.

The client lives in :mod:`reuse.remote.client` (with :class:`reuse.remote.RemoteService`, the facade over
it); this module only re-exports it.
"""

from __future__ import annotations

from reuse.remote.client import ReuseClient

__all__ = ["ReuseClient"]
