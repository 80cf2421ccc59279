"""trl_adpo: Autoregressive Direct Preference Optimization (ADPO, arXiv 2602.09533) for Hugging Face TRL.

The names below are imported on first use, so that `from trl_adpo import adpo_loss` does not import TRL.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.4.0"

_EXPORTS = {
    "ADPOConfig": ".config",
    "ADPOLossOutput": ".objective",
    "ADPOTrainer": ".trainer",
    "adpo_loss": ".objective",
    "segment_ids": ".segmentation",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # the names __all__ exports, for type checkers (imported lazily by __getattr__)
    from .config import ADPOConfig  # noqa: F401
    from .objective import ADPOLossOutput, adpo_loss  # noqa: F401
    from .segmentation import segment_ids  # noqa: F401
    from .trainer import ADPOTrainer  # noqa: F401


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'trl_adpo' has no attribute {name!r}")
