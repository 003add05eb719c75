"""Ablation table of the musical-quality changes, from evaluation reports.

    python bench/quality_ablation.py --out docs/eval/ablation.md NAME=EVAL_DIR [NAME=EVAL_DIR ...]

Each EVAL_DIR holds the `report.json` of `python -m vaejax.evaluate` for one run (trained with the same
budget). The table gives, for the default sigma, what the musical-quality goals are about: tonal distance of
the band to the piano, empty bars and pitch classes per track, qualified notes of the raw decoder output,
scale consistency of whole songs, the arrangement of given piano parts, and held-out reconstruction F1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

BAND = ("Guitar", "Bass", "Strings")


def _f(v, digits=2):
    return "-" if v is None or v != v else f"{v:.{digits}f}"


def row(name: str, rep: dict, sigma: str) -> list[str]:
    gen = rep["generation"]["rows"].get(f"prior sigma={sigma}", {})
    arr = (rep.get("arrangement") or {}).get("raw", {})
    rec = rep["runs"][0]["reconstruction"]
    f1 = sum(rec[t]["f1"] for t in ("Drums", "Piano", "Guitar", "Bass", "Strings")) / 5
    cells = [name]
    cells.append(" / ".join(_f(gen.get(f"TD {t[0]}-P")) for t in BAND))
    cells.append(" / ".join(_f(gen.get(f"EB {t}"), 0) for t in ("Drums", "Piano") + BAND))
    cells.append(" / ".join(_f(gen.get(f"UPC {t}"), 1) for t in ("Piano",) + BAND))
    cells.append(" / ".join(_f(gen.get(f"QN {t}"), 0) for t in ("Piano",) + BAND))
    cells.append(_f(gen.get("SC"), 1))
    cells.append(" / ".join(_f(100 - arr[f"EB {t}"], 0) if f"EB {t}" in arr else "-" for t in ("Drums",) + BAND))
    cells.append(" / ".join(_f(arr.get(f"TD {t[0]}-P")) for t in BAND))
    cells.append(_f(f1, 3))
    return cells


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+", help="NAME=EVAL_DIR")
    ap.add_argument("--sigma", default="0.5")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    header = [
        "design",
        "TD G/B/S-piano",
        "EB D/P/G/B/S %",
        "UPC P/G/B/S",
        "QN raw P/G/B/S %",
        "SC %",
        "arranged: plays D/G/B/S %",
        "arranged: TD G/B/S-piano",
        "recon F1",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    first = None
    for item in args.reports:
        name, path = item.split("=", 1)
        with open(os.path.join(path, "report.json")) as f:
            rep = json.load(f)
        if first is None:
            first = rep
            real = dict(rep["real"])
            songs = rep.get("real_rows", {})
            for label, r in (
                ("real (test songs)", songs.get("real (test songs)")),
                ("real, tracks shuffled across songs", songs.get("real, tracks shuffled across songs")),
            ):
                if r:
                    share = rep.get("nonempty_bar_share", {})
                    cells = [
                        label,
                        " / ".join(_f(r.get(f"TD {t[0]}-P")) for t in BAND),
                        " / ".join(_f(r.get(f"EB {t}"), 0) for t in ("Drums", "Piano") + BAND),
                        " / ".join(_f(r.get(f"UPC {t}"), 1) for t in ("Piano",) + BAND),
                        " / ".join(_f(r.get(f"QN {t}"), 0) for t in ("Piano",) + BAND),
                        _f(r.get("SC"), 1),
                        " / ".join(_f(100 * share[t], 0) for t in ("Drums",) + BAND)
                        if "real (" in label and share
                        else "",
                        "",
                        "",
                    ]
                    lines.append("| " + " | ".join(cells) + " |")
            del real
        lines.append("| " + " | ".join(row(name, rep, args.sigma)) + " |")
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
