"""Training, one job per file: `steps` (pure jitted steps), `loop` (the loop the stages share: logging,
validation, checkpoints, resume), `stages` (the VAE and chain stages, `train`), `calibration` (encoding
and the statistics generation needs)."""

from vaejax.runs import STAGES
from vaejax.training.stages import train, train_all, train_chain, train_vae

__all__ = ["STAGES", "train", "train_all", "train_chain", "train_vae"]
