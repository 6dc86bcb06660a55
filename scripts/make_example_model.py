"""Re-create the shipped example model, ``models/digits-base/v1.h5`` (fixed seeds; re-runnable).

    python scripts/make_example_model.py [--epochs 60] [--seed 0] [--root .]

See reuse/quickstart/example.py for the recipe. Prints the test accuracy the README quotes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reuse.quickstart import example  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=example.EPOCHS)
    p.add_argument("--seed", type=int, default=example.SEED)
    p.add_argument("--root", type=Path, default=example.repo_root(),
                   help="folder holding models/ (default: repo)")
    args = p.parse_args()
    made = example.make_example_model(args.root, epochs=args.epochs, seed=args.seed)
    size = made.path.stat().st_size
    print(f"wrote {made.path} ({size / 1000:.1f} kB): {made.epochs} epochs in {made.seconds:.1f} s, "
          f"train accuracy {made.train_accuracy:.4f}, test accuracy {made.test_accuracy:.4f} "
          f"on {example.TEST_DATA}")


if __name__ == "__main__":
    main()
