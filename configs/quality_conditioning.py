"""Row "+ piano conditioning (guidance 4)" of the first ablation (docs/quality-report.md, "Ablation (same
training budget for every row)"): the previous design with the band's decoders conditioned on the piano's
pitch classes per beat (sampled with harmony guidance 4), on the cache prepared with `--keep-key`. 1,500 VAE
steps of 128 bars, 5 chain epochs. The table's figures come from the code of their time; this file gives the
row's design and budget in today's code (its runs also train today's prior).

    vaejax prepare ../shared/data/lpd_cleansed /tmp/lpd_keep_key --keep-key
    python train.py --config configs/quality_conditioning.py --data /tmp/lpd_keep_key --run /tmp/runs/q_condition
"""

from vaejax.config import Config, preset


def get_config() -> Config:
    return preset("default").replace(
        model={"latent": 16, "grid": 0, "time_patch": (4, 4), "condition": True, "onsets": False, "plays": False},
        train={"batch_size": 128, "vae_epochs": 3, "max_steps_per_epoch": 500, "chain_epochs": 5},
    )
