"""The stock KServe v2 client (tritonclient[grpc,http]) in its own virtual environment.

tritonclient pins protobuf < 7 and defines the same ``inference.*`` protobuf symbols as our generated
code, so it runs in a subprocess from .venv-triton (``make triton-venv`` builds it; the tests build it too
when it is missing). Tests that need it are skipped only when that environment cannot be made.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("REUSE_TRITON_VENV", ROOT / ".venv-triton"))


def triton_python() -> Path:
    py = VENV / "bin" / "python"
    ready = (VENV / ".installed").exists()
    if ready and subprocess.run([str(py), "-c", "import tritonclient.grpc, tritonclient.http"],
                                capture_output=True, timeout=60).returncode == 0:
        return py
    try:
        if not ready:
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True,
                           timeout=120)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "tritonclient[grpc,http]", "numpy"],
                       check=True, capture_output=True, timeout=300)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"cannot create the tritonclient environment at {VENV} (no network?): {exc}")
    (VENV / ".installed").touch()
    return py
