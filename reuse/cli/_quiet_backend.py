"""Import the Keras backend without TensorFlow's start-up noise on the terminal.

TensorFlow 2.x writes oneDNN/CUDA-probe lines from C++ before its logging is initialised, so
TF_CPP_MIN_LOG_LEVEL does not silence them. The CLI pre-imports the backend with file
descriptor 2 pointed at a temporary file, and replays what was written there only if the import fails.
Set REUSE_BACKEND_LOGS=1 to see everything. CLI-only: the library never touches the process's stderr.
"""

from __future__ import annotations

import os
import sys
import tempfile


def import_backend_quietly() -> None:
    if "keras" in sys.modules or os.environ.get("REUSE_BACKEND_LOGS"):
        return
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import keras

            keras.ops.zeros((1,))  # the device probe (cuInit) happens on the first op
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
