"""Subprocess helper for the store's concurrency and crash tests (not collected by pytest).

    python store_worker.py register ROOT NAME COUNT   register COUNT small models, print each ref
    python store_worker.py forever ROOT NAME          print "ready", then register a ~24 MB model in a loop
    python store_worker.py stall URL NAME             (s3://) register a ~24 MB model in 8 MiB parts; print
                                                      "uploading" once the first part is sent, then hang
    python store_worker.py legacy OUT_DIR             write tf.keras 2 .h5 files (run with
    TF_USE_LEGACY_KERAS=1)
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _register(root: str, name: str, count: int) -> None:
    import keras

    from reuse.store import ModelStore

    store = ModelStore(root)
    keras.utils.set_random_seed(os.getpid() % 10_000)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    for _ in range(count):
        print(store.register(model, name, description=f"pid {os.getpid()}").ref, flush=True)


def _forever(root: str, name: str) -> None:
    import keras

    from reuse.store import ModelStore

    store = ModelStore(root)
    model = keras.Sequential([keras.Input((1000,)), keras.layers.Dense(3000, name="big1"),
                              keras.layers.Dense(1000, name="big2")])
    print("ready", flush=True)
    while True:
        store.register(model, name)


def _stall(root: str, name: str) -> None:
    """A writer that hangs in the middle of a multipart upload, for the test to kill there."""
    import threading
    import time

    import keras
    from boto3.s3.transfer import TransferConfig

    from reuse.store import ModelStore
    from reuse.store.s3_objects import Bucket

    said = threading.Event()

    def progress(nbytes: int) -> None:
        if not said.is_set():
            said.set()
            print("uploading", flush=True)
        time.sleep(3600)

    def upload(self, key, path):
        config = TransferConfig(multipart_threshold=8 * 1024**2, multipart_chunksize=8 * 1024**2)
        self.client.upload_file(str(path), self.bucket, self.full(key), Config=config, Callback=progress)

    Bucket.upload = upload
    model = keras.Sequential([keras.Input((1000,)), keras.layers.Dense(3000, name="big1"),
                              keras.layers.Dense(1000, name="big2")])
    ModelStore(root).register(model, name)


def _legacy(out_dir: str) -> None:
    import numpy as np
    import tf_keras as k

    k.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    plain = k.Sequential([k.layers.Input((6,)), k.layers.Dense(5, activation="relu", name="hidden1"),
                          k.layers.BatchNormalization(name="bn"), k.layers.Dense(3, name="output")])
    plain.compile("adam", "mse")  # a compiled file carries optimizer state we must ignore
    plain.fit(x, np.ones((5, 3)), epochs=1, verbose=0)
    plain.save(os.path.join(out_dir, "tf2_plain.h5"))
    np.save(os.path.join(out_dir, "tf2_x.npy"), x)
    np.save(os.path.join(out_dir, "tf2_y.npy"), plain.predict(x, verbose=0))
    lam = k.Sequential([k.layers.Input((6,)), k.layers.Dense(3, name="d"),
                        k.layers.Lambda(lambda t: t * 2, name="double")])
    lam.save(os.path.join(out_dir, "tf2_lambda.h5"))
    print(k.__version__)


def _light_keras() -> None:
    """Keras on its numpy backend with TensorFlow kept out: ~2 s to start instead of ~6 s, which matters
    with several workers on two cores. The store code under test is backend-neutral. Keras's numpy
    backend imports jax (for its FFT), which only the optional [jax] extra installs: without jax, stay on
    the default backend."""
    import importlib.util

    if importlib.util.find_spec("jax") is None:
        return
    os.environ["KERAS_BACKEND"] = "numpy"
    sys.modules["tensorflow"] = None  # type: ignore[assignment]  # makes `import tensorflow` fail fast


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode in ("register", "forever", "stall"):
        _light_keras()
    if mode == "register":
        _register(args[0], args[1], int(args[2]))
    elif mode == "forever":
        _forever(args[0], args[1])
    elif mode == "stall":
        _stall(args[0], args[1])
    elif mode == "legacy":
        _legacy(args[0])
    else:
        sys.exit(f"unknown mode {mode!r}")
