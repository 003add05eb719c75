"""Row "the previous design" and "+ key normalisation" of the first ablation (docs/quality-report.md, "Ablation
(same training budget for every row)"): the design before the quality work: no piano conditioning, one output
map (no onset map), no plays head, the data's own 24 steps per beat with 4 x 4 time patches. Row "the previous
design" trains on the cache prepared with `--keep-key`, row "+ key normalisation" on the key-normalised cache.
1,500 VAE steps of 128 bars, 5 chain epochs. The table's figures come from the code of their time; this file
gives the row's design and budget in today's code (its runs also train today's prior).

    vaejax prepare ../shared/data/lpd_cleansed /tmp/lpd_keep_key --keep-key
    python train.py --config configs/quality_previous_design.py --data /tmp/lpd_keep_key --run /tmp/runs/q_previous
    vaejax prepare ../shared/data/lpd_cleansed /tmp/lpd_key
    python train.py --config configs/quality_previous_design.py --data /tmp/lpd_key --run /tmp/runs/q_key
"""

from vaejax.config import Config, preset


def get_config() -> Config:
    return preset("default").replace(
        model={"latent": 16, "grid": 0, "time_patch": (4, 4), "condition": False, "onsets": False, "plays": False},
        train={"batch_size": 128, "vae_epochs": 3, "max_steps_per_epoch": 500, "chain_epochs": 5},
    )
