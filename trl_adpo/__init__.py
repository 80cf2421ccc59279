"""trl_adpo: Autoregressive Direct Preference Optimization (ADPO, arXiv 2602.09533) for Hugging Face TRL."""

from .config import ADPOConfig
from .objective import ADPOLossOutput, adpo_loss
from .segmentation import segment_ids
from .trainer import ADPOTrainer

__version__ = "0.2.0"

__all__ = ["ADPOConfig", "ADPOLossOutput", "ADPOTrainer", "adpo_loss", "segment_ids"]
