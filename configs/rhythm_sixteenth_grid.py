"""Row "sixteenth grid" (row 2) of the rhythm ablation (docs/quality-report.md, "Ablation (same budget per
row)"): the default design, 600 VAE steps of 256 bars, 5 chain epochs. The report's other rows decode this
row's model differently (bench/rhythm_ablation.py NAME=RUN:VARIANT), they train nothing new.

    vaejax prepare ../shared/data/lpd_cleansed /tmp/lpd_key
    python train.py --config configs/rhythm_sixteenth_grid.py --data /tmp/lpd_key --run /tmp/runs/grid
"""

from vaejax.config import Config, preset


def get_config() -> Config:
    return preset("default").replace(
        model={"latent": 16},
        train={"batch_size": 256, "vae_epochs": 2, "max_steps_per_epoch": 300, "chain_epochs": 5},
    )
