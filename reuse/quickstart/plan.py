"""What the walk-through does: the task, the names it registers, and its settings."""

from __future__ import annotations

from dataclasses import dataclass

from reuse.errors import InvalidInput

BASE = "digits-base"
NEW = "digits-5to9"
SCRATCH = "digits-scratch"
SCOPE = "hidden[123]"
UNFREEZE = "hidden3"
CLASSES = 5
PER_CLASS = 20
TRAIN_DATA = f"builtin:digits?classes=5-9&per_class={PER_CLASS}&relabel=1"
TEST_DATA = "builtin:digits?classes=5-9&relabel=1&split=test"


@dataclass(frozen=True)
class QuickstartOptions:
    """Settings of one walk-through.

    Attributes:
        epochs: training epochs of the new head (and of the from-scratch network).
        finetune_epochs: epochs of the fine-tuning phase (lr: a tenth of the training rate).
        seeds: runs per approach in the comparison (seed 0 is the run shown in steps 3-4).
        lr: the training learning rate (Adam).
        advisor: also run ``reuse advise`` on the same task in step 5.
    """

    epochs: int = 100
    finetune_epochs: int = 50
    seeds: int = 3
    lr: float = 1e-3
    advisor: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "finetune_epochs", "seeds"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidInput(f"invalid {name} {value!r}: expected an integer >= 1")

    @classmethod
    def quick(cls, epochs: int | None = None) -> QuickstartOptions:
        """The fast variant (tests, a first look): fewer epochs, two seeds, no advisor run."""
        e = epochs or 30
        return cls(epochs=e, finetune_epochs=max(1, e // 2), seeds=2, advisor=False)

    @classmethod
    def full(cls, epochs: int | None = None) -> QuickstartOptions:
        e = epochs or 100
        return cls(epochs=e, finetune_epochs=max(1, e // 2))

    def train_options(self, seed: int) -> dict[str, object]:
        return {"epochs": self.epochs, "optimizer": "adam", "lr": self.lr, "seed": seed}

    def finetune_options(self, seed: int) -> dict[str, object]:
        # No lr: fine-tuning defaults to a tenth of the rate the model was trained with.
        return {"epochs": self.finetune_epochs, "seed": seed}
