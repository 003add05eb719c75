"""Row "whole-bar pointer (first version), 2000 steps" of the form ablation (docs/quality-report.md, "Per-track
and whole-bar pointers"): the first version of the prior over bar latents: one whole-bar pointer
(`copy="bar"`), one lag preference per distance, training windows from any bar. The VAEs and chains are the
packaged model's settings (configs/lpd5.py), so on a finished lpd5 run only the prior needs training: add
`--stage prior` with that run's folder (it keeps the run's VAEs, chains and config.json and takes the prior
section from this file).

    python train.py --config configs/form_first_prior.py --data /tmp/lpd_key --run /tmp/runs/first
"""

from vaejax.config import Config, preset


def get_config() -> Config:
    return preset("default").replace(
        model={"latent": 16},
        train={"batch_size": 256, "vae_epochs": 6, "max_steps_per_epoch": 300, "chain_epochs": 15},
        prior={"copy": "bar", "phase_lags": False, "piano_start": False, "steps": 2000},
    )
