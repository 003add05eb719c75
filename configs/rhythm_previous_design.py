"""Row "previous design" (row 1) of the rhythm ablation (docs/quality-report.md, "Ablation (same budget per
row)"): as configs/rhythm_sixteenth_grid.py, but the VAEs model the data's own 24 steps per beat (no sixteenth
grid) with 4 x 4 time patches.

    vaejax prepare ../shared/data/lpd_cleansed /tmp/lpd_key
    python train.py --config configs/rhythm_previous_design.py --data /tmp/lpd_key --run /tmp/runs/previous
"""

from vaejax.config import Config, preset


def get_config() -> Config:
    return preset("default").replace(
        model={"latent": 16, "grid": 0, "time_patch": (4, 4)},
        train={"batch_size": 256, "vae_epochs": 2, "max_steps_per_epoch": 300, "chain_epochs": 5},
    )
