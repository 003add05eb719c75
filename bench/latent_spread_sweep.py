"""The spread of the prior's new bars around their mixture component (`vaejax.prior.LATENT_SPREAD`, a factor
of the temperature) against the two-sample classifier (docs/quality-report.md, "Tried: a song-level code",
the spread paragraph):

    python bench/latent_spread_sweep.py --data PREPARED --spreads 0.6 0.8 1.0 1.3 1.6 \
        --work /tmp/spread --out bench/results/prior_spread

For each factor: a copy of the packaged model (`--model`) under `--work`, its prior decoding calibrated again
on songs drawn at that spread (`training.stages.calibrate_prior`, as training does), then
`drum_kit_ablation.py`'s classifier on four seeds with the model's own kit, written to
`OUT/classifier_spread{F}.json`. At the shipped 1.0 the calibration gives back the packaged model's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import drum_kit_ablation

from vaejax import data as data_lib
from vaejax import packaging, prior
from vaejax.runs import RunFolder
from vaejax.training import stages


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="lpd5", help="a packaged model's name or a run folder")
    ap.add_argument("--spreads", type=float, nargs="+", default=[0.6, 0.8, 1.0, 1.3, 1.6])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--work", required=True, help="where the recalibrated copies go")
    ap.add_argument("--out", required=True, help="folder of the classifier files")
    args = ap.parse_args(argv)
    src = packaging.pretrained_path(args.model) if args.model in packaging.pretrained_names() else args.model
    ds = data_lib.open_dataset(args.data)
    kit = str(RunFolder(src).read_stats().get("drum_kit", 8))
    shipped = prior.LATENT_SPREAD
    try:
        for f in args.spreads:
            prior.LATENT_SPREAD = f  # read when the sampler is traced
            dst = os.path.join(args.work, f"spread{f}")
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst)
            run = RunFolder(dst)
            t = time.perf_counter()
            stages.calibrate_prior(run, stages.with_data(run.read_config(), args.data), ds)
            print(f"spread {f:g}: prior decoding calibrated in {time.perf_counter() - t:.0f} s", flush=True)
            out = os.path.join(args.out, f"classifier_spread{f}.json")
            seeds = [str(s) for s in args.seeds]
            drum_kit_ablation.main(
                ["--data", args.data, "--model", dst, "--kits", kit, "--seeds", *seeds, "--out", out]
            )
    finally:
        prior.LATENT_SPREAD = shipped
    return 0


if __name__ == "__main__":
    sys.exit(main())
