"""What the VAEs' latent size, KL weight and width buy at one training budget: runs side by side.

Each row is a run folder trained through the stages reconstructions need (`vae`, `encode`, `melody`,
`harmony`; the last calibrates the decoding of encoded latents on validation passages), at the same number
of VAE steps. Per row: the VAE stage's last validation epoch (negative ELBO at beta 1 split into its
reconstruction and KL terms, summed over the five VAEs; frame F1 per track on the sixteenth grid), the
VAE stage's seconds, parameters per instrument, and, from `bench/rhythm_ablation.py` output for the same
runs (`--rhythm FILE ...`), held-out note-on F1, reconstruction onset TV and the reconstruction classifier.

    python bench/vae_capacity.py NAME=RUN [NAME=RUN ...] [--rhythm ABLATION.json ...] --out FILE.json \
        [--pictures DIR --data PREPARED]

`--pictures` also draws one held-out 8-bar passage (`--passage`: its index among the test split's windows)
as it is and as each row reconstructs it (sigma 0, the default decoding): DIR/real.png, DIR/ROW.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from provenance import provenance  # noqa: E402

from vaejax.config import TRACKS  # noqa: E402


def vae_summary(run: str) -> dict:
    """The VAE stage of a run folder: its settings, last validation epoch and time."""
    with open(os.path.join(run, "config.json")) as f:
        cfg = json.load(f)
    rows = []
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("stage") == "vae":
                rows.append(r)
    valid = [r for r in rows if r["kind"] == "valid"]
    if not valid:
        raise SystemExit(f"{run}: no validation epoch of the VAE stage in metrics.jsonl")
    last = valid[-1]
    train = [r for r in rows if r["kind"] == "train"]
    return {
        "latent": cfg["model"]["latent"],
        "channels": cfg["model"]["channels"],
        "hidden": cfg["model"]["hidden"],
        "beta": cfg["train"]["beta"],
        "free_bits": cfg["train"]["free_bits"],
        "steps": last["step"],
        "vae_seconds": round(sum(r["seconds"] for r in valid), 1),
        "val_loss": round(last["val_loss"], 1),
        "val_recon": round(last["val_recon"], 1),
        "val_kl": round(last["val_kl"], 1),
        "train_recon_last": round(float(np.mean([r["recon"] for r in train[-5:]])), 1),
        "frame_f1": {t: round(last[f"f1_{t}"], 4) for t in TRACKS},
        "params_per_instrument": params_per_instrument(run),
    }


def params_per_instrument(run: str) -> int | None:
    """Parameters of one instrument's VAE, from the newest VAE checkpoint's arrays (stacked on the
    instrument axis); None where the checkpoint cannot be read."""
    try:
        from vaejax import trained_model

        model = trained_model.load(run)
    except Exception:  # noqa: BLE001 - a summary without the count is still a summary
        return None
    import jax

    leaves = jax.tree.leaves(model.vae)
    return int(sum(np.prod(a.shape[1:]) for a in leaves))


def pictures(rows: dict, data: str, out_dir: str, passage: int, bars: int = 8) -> list:
    """Pianoroll pictures of one test passage and of each run's reconstruction of it."""
    from vaejax import data as data_lib
    from vaejax import render, trained_model

    test = data_lib.open_dataset(data)["test"]
    song, first = test.windows(bars)[passage]
    real = test.song(song)[:, first : first + bars]
    real = real.reshape(5, -1, real.shape[-1])  # [5, bars * steps, pitches]
    lo, n = test.cfg.lowest_pitch, test.cfg.num_pitches
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "real.png")]
    render.plot(render.to_multitrack(real), paths[0], title=f"held-out passage {passage}, as it is")
    for name, run in rows.items():
        rec = np.asarray(trained_model.load(run).vary(real, sigma=0))[..., lo : lo + n]
        slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
        paths.append(os.path.join(out_dir, f"{slug}.png"))
        render.plot(render.to_multitrack(rec), paths[-1], title=f"reconstructed: {name}")
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", nargs="+", help="NAME=RUN")
    ap.add_argument("--rhythm", nargs="*", default=[], help="bench/rhythm_ablation.py outputs for these runs")
    ap.add_argument("--out", required=True)
    ap.add_argument("--pictures", help="folder for pianoroll pictures of one reconstructed test passage")
    ap.add_argument("--data", help="prepared dataset (for --pictures)")
    ap.add_argument("--passage", type=int, default=3, help="which test window of 8 bars (for --pictures)")
    args = ap.parse_args(argv)
    if args.pictures and not args.data:
        ap.error("--pictures needs --data")
    rhythm = {}
    for path in args.rhythm:
        with open(path) as f:
            for r in json.load(f)["rows"].values():
                rhythm[os.path.abspath(r["run"])] = r
    out = provenance("vae_capacity.py", argv) | {"rows": {}}
    for spec in args.rows:
        name, _, run = spec.partition("=")
        row = vae_summary(run)
        r = rhythm.get(os.path.abspath(run))
        if r is not None:
            rec = r["realism"]["reconstructed"]
            row["test_note_on_f1"] = {t: round(r["reconstruction"][t], 4) for t in TRACKS}
            row["test_recon_onset_tv"] = {t: round(rec["vs_real"][t]["onset_tv"], 4) for t in TRACKS}
            row["test_recon_classifier"] = {b: round(rec["classifier"][b]["accuracy"], 4) for b in ("4", "16")}
        out["rows"][name] = row
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(table(out))
    if args.pictures:
        runs = dict(spec.partition("=")[::2] for spec in args.rows)
        print("\n".join(pictures(runs, args.data, args.pictures, args.passage)))
    return 0


def table(out: dict) -> str:
    tr = "/".join(t[0] for t in TRACKS)
    lines = [
        f"| row | K | beta | channels, hidden | params per instrument | VAE stage s | valid -ELBO (recon + KL) "
        f"| valid frame F1 {tr} | test note-on F1 {tr} | test recon onset TV {tr} | recon classifier 4 / 16 |",
        "|" + "---|" * 11,
    ]
    for name, r in out["rows"].items():
        j = lambda d, fmt="{:.3f}": " / ".join(fmt.format(d[t]) for t in TRACKS) if d else ""  # noqa: E731
        clf = r.get("test_recon_classifier")
        lines.append(
            f"| {name} | {r['latent']} | {r['beta']} | {tuple(r['channels'])}, {r['hidden']} | "
            f"{r['params_per_instrument'] or ''} | {r['vae_seconds']} | {r['val_loss']} ({r['val_recon']} + "
            f"{r['val_kl']}) | {j(r['frame_f1'])} | {j(r.get('test_note_on_f1'))} | "
            f"{j(r.get('test_recon_onset_tv'))} | "
            + (f"{100 * clf['4']:.1f} / {100 * clf['16']:.1f}%" if clf else "")
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
