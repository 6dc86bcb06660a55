"""TensorFlow only: split the machine's cores between advisor worker processes.

Each TensorFlow process would otherwise start one compute thread per core, and ``jobs`` workers on the
same cores would fight over them.
"""

from __future__ import annotations


def limit_threads(threads: int) -> None:
    """Use at most ``threads`` threads for TensorFlow ops in this process (call before any op runs)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
    except RuntimeError:  # the runtime is already initialised: keep its settings
        pass
