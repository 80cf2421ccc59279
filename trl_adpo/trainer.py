"""`ADPOTrainer`: a drop-in replacement for TRL's `DPOTrainer` that trains with the ADPO loss.

TRL changed its DPOTrainer in 0.29: 0.28.x exposes `concatenated_forward` and `dpo_loss`, 1.x computes the loss in
one private `_compute_loss`. Each line has its own glue module; this one picks the one for the installed TRL.
"""

from __future__ import annotations

import trl
from packaging.version import Version

TRL_VERSION = Version(trl.__version__)

if Version("0.28") <= TRL_VERSION < Version("0.29"):
    from .trainer_trl028 import ADPOTrainer
elif Version("1.16") <= TRL_VERSION < Version("2"):
    from .trainer_trl1 import ADPOTrainer
else:
    raise ImportError(
        f"trl_adpo supports TRL 0.28.x and TRL 1.16 or later 1.x releases; TRL {trl.__version__} is installed. "
        "Install a supported one: pip install 'trl>=1.16,<2' (or 'trl>=0.28,<0.29' with 'transformers<5.3')."
    )

__all__ = ["ADPOTrainer", "TRL_VERSION"]
