"""The job kinds this package ships, registered when :mod:`reuse.jobs` first needs them.

Wiring a new kind is one function and one line here (see docs/grpc-api.md, "Job kinds"):

    def _train(params, progress, cancel):
        ...  # call the training core with progress and cancel; it raises Cancelled when cancel is set
        return {"model": info.ref, "metrics": info.metrics}

    register_job_kind("train", _train)
"""

from __future__ import annotations

import threading
from typing import Any

from reuse.errors import Cancelled, ReuseError
from reuse.jobs.records import Progress, register_job_kind


def verify_store(params: dict[str, Any], progress: Progress, cancel: threading.Event) -> dict[str, Any]:
    """Check the weight checksums of every version in the store (or of ``params["models"]``).

    Returns ``{"checked": N, "corrupt": {"name:version": "why", ...}}``.
    """
    from reuse.store import ModelStore, h5file

    store = ModelStore(params["store"])
    names = params.get("models") or store.names()
    refs = [info.ref for name in names for info in store.versions(name)]
    corrupt: dict[str, str] = {}
    for i, ref in enumerate(refs, start=1):
        if cancel.is_set():
            raise Cancelled(f"verify stopped after {i - 1} of {len(refs)} versions")
        path = store.path(ref)
        try:
            with h5file.open_read(path) as f:
                h5file.verify_all(f, path)
        except ReuseError as exc:
            corrupt[ref] = str(exc)
        progress({"epoch": i, "epochs": len(refs), "message": f"checked {ref}",
                  "metrics": {"corrupt": float(len(corrupt))}})
    return {"checked": len(refs), "corrupt": corrupt}


register_job_kind("verify", verify_store)
