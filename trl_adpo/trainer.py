"""`ADPOTrainer`: a drop-in replacement for TRL's `DPOTrainer` that trains with the ADPO loss.

TRL changed its DPOTrainer in 0.29: 0.28.x exposes `concatenated_forward` and `dpo_loss`, 1.x computes the loss in
one private `_compute_loss`. Each line has its own glue module; this one picks the one for the installed TRL, after
`compat.check_trl` has checked a TRL outside the tested releases.
"""

from __future__ import annotations

import trl
from packaging.version import Version
from trl import DPOTrainer

from .compat import check_trl

TRL_VERSION = Version(trl.__version__)

if check_trl(TRL_VERSION, DPOTrainer) == "0.28":
    from .trainer_trl028 import ADPOTrainer
else:
    from .trainer_trl1 import ADPOTrainer

__all__ = ["ADPOTrainer", "TRL_VERSION"]
