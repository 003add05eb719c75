"""Row "all together" of the first ablation (docs/quality-report.md, "Ablation (same training budget for every
row)"): key normalisation, piano conditioning, onset/sustain notes and the plays head, before the sixteenth
grid (the data's own 24 steps per beat, 4 x 4 time patches). 1,500 VAE steps of 128 bars, 5 chain epochs. The
table's figures come from the code of their time; this file gives the row's design and budget in today's code
(its runs also train today's prior).

    vaejax prepare ../shared/data/lpd_cleansed /tmp/lpd_key
    python train.py --config configs/quality_all_together.py --data /tmp/lpd_key --run /tmp/runs/q_all
"""

from vaejax.config import Config, preset


def get_config() -> Config:
    return preset("default").replace(
        model={"latent": 16, "grid": 0, "time_patch": (4, 4), "condition": True, "onsets": True, "plays": True},
        train={"batch_size": 128, "vae_epochs": 3, "max_steps_per_epoch": 500, "chain_epochs": 5},
    )
