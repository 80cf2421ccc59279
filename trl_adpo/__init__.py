"""trl_adpo: Autoregressive Direct Preference Optimization (ADPO, arXiv 2602.09533) for Hugging Face TRL."""

from .objective import ADPOLossOutput, adpo_loss, segment_ids

__version__ = "0.1.0"

__all__ = ["ADPOLossOutput", "adpo_loss", "segment_ids"]
