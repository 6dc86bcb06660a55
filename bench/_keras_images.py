"""The Keras transfer-learning guide's own pipeline, as the baseline of bench/images.py.

``image_dataset_from_directory`` (batches of 32, shuffled, prefetched), the frozen base called with
``training=False`` inside the model, an optional ``data_augmentation`` Sequential in front of it, then
``compile`` + ``fit``: https://keras.io/guides/transfer_learning/ . The frozen part and the head are taken
from the same built version the reuse runs train, so both start from the same weights.

    python bench/_keras_images.py MODEL.h5 DIR EXIT_LAYER EPOCHS [--augment] -> one JSON line on stdout
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    path, folder, exit_layer, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    augment = "--augment" in sys.argv
    t0 = time.perf_counter()
    import keras

    built = keras.saving.load_model(path, compile=False)
    frozen = keras.Model(built.inputs, built.get_layer(exit_layer).output, name="frozen_base")
    frozen.trainable = False
    side = int(built.inputs[0].shape[1])
    ds = keras.utils.image_dataset_from_directory(folder, image_size=(side, side), batch_size=32, seed=0,
                                                  label_mode="int")
    import tensorflow as tf

    ds = ds.prefetch(tf.data.AUTOTUNE)
    inputs = keras.Input((side, side, 3))
    x = inputs
    if augment:  # the guide's data_augmentation block
        x = keras.Sequential([keras.layers.RandomFlip("horizontal", seed=0),
                              keras.layers.RandomRotation(0.1, seed=1)],
                             name="data_augmentation")(x)
    x = frozen(x, training=False)
    for layer in built.layers[built.layers.index(built.get_layer(exit_layer)) + 1:]:
        x = layer(x)
    model = keras.Model(inputs, x)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(ds, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "loss": [float(v) for v in history.history["loss"]],
                      "accuracy": [float(v) for v in history.history["accuracy"]]}))


if __name__ == "__main__":
    main()
