"""The packaged model `lpd5` (vaejax/pretrained/lpd5): the default design on the key-normalised LPD-5 cache,
6,000 VAE steps of 256 bars (20 epochs of 300 steps, the learning rate falling along a cosine to a tenth),
15 epochs per latent chain, then 4,000 steps of the prior
over bar latents (per-track and whole-bar pointers, lag preferences per place in the phrase).

    vaejax prepare ../shared/data/lpd_cleansed /tmp/lpd_key
    python train.py --config configs/lpd5.py --data /tmp/lpd_key --run /tmp/runs/final
    vaejax export /tmp/runs/final vaejax/pretrained/lpd5
"""

from vaejax.config import Config, preset


def get_config() -> Config:
    return preset("default").replace(
        model={"latent": 16},
        train={"batch_size": 256, "vae_epochs": 20, "max_steps_per_epoch": 300, "chain_epochs": 15, "lr_decay": 0.1},
        prior={"steps": 4000},
    )
