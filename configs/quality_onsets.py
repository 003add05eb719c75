"""Row "+ onset/sustain notes, counted" of the first ablation (docs/quality-report.md, "Ablation (same training
budget for every row)"): the previous design with an onset map beside the sustain map (notes decoded from both
and counted), on the cache prepared with `--keep-key`. 1,500 VAE steps of 128 bars, 5 chain epochs. The
table's figures come from the code of their time; this file gives the row's design and budget in today's code
(its runs also train today's prior).

    vaejax prepare ../shared/data/lpd_cleansed /tmp/lpd_keep_key --keep-key
    python train.py --config configs/quality_onsets.py --data /tmp/lpd_keep_key --run /tmp/runs/q_onsets
"""

from vaejax.config import Config, preset


def get_config() -> Config:
    return preset("default").replace(
        model={"latent": 16, "grid": 0, "time_patch": (4, 4), "condition": False, "onsets": True, "plays": False},
        train={"batch_size": 128, "vae_epochs": 3, "max_steps_per_epoch": 500, "chain_epochs": 5},
    )
