"""Row "per-track pointers, 2000 steps" of the form ablation (docs/quality-report.md, "Per-track and whole-bar
pointers"): per-track pointers only (`copy="track"`), one lag preference per distance, windows from a bar
where the piano plays. The VAEs and chains are the packaged model's settings (configs/lpd5.py), so on a
finished lpd5 run only the prior needs training: add `--stage prior` with that run's folder (it keeps the
run's VAEs, chains and config.json and takes the prior section from this file).

    python train.py --config configs/form_per_track.py --data /tmp/lpd_key --run /tmp/runs/trk
"""

from vaejax.config import Config, preset


def get_config() -> Config:
    return preset("default").replace(
        model={"latent": 16},
        train={"batch_size": 256, "vae_epochs": 6, "max_steps_per_epoch": 300, "chain_epochs": 15},
        prior={"copy": "track", "phase_lags": False, "piano_start": True, "steps": 2000},
    )
