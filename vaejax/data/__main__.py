"""The command line `python -m vaejax.data prepare|verify|demo|download` (also `vaejax data ...`); `vaejax prepare`
and `vaejax verify` use its prepare and verify commands. Argument parsing and messages only: the work is
`vaejax.data`'s."""

from __future__ import annotations

import argparse
import sys

from vaejax import data, music
from vaejax.config import DataConfig, program
from vaejax.data import FILE_TIMEOUT, PREPARE_BUDGET_MB, CacheError, PrepareError, prepare, summary, verify


def prepare_arguments(pp: argparse.ArgumentParser) -> None:
    """The options of the prepare command (`python -m vaejax.data prepare`, `vaejax prepare`)."""
    pp.add_argument("src", help="a folder (searched recursively) or one file")
    pp.add_argument("out", help="output folder")
    d = DataConfig()  # the defaults are the configuration's, written once
    pp.add_argument("--segment-bars", type=int, default=d.segment_bars)
    pp.add_argument("--lowest-pitch", type=int, default=d.lowest_pitch, help="MIDI pitch of the lowest row (24 = C1)")
    pp.add_argument("--pitches", type=int, default=d.num_pitches, help="number of pitch rows (84 = C1..B7)")
    pp.add_argument(
        "--velocity-threshold", type=int, default=d.velocity_threshold, help="cells with velocity above it are on"
    )
    pp.add_argument(
        "--keep-key",
        action="store_true",
        help="keep songs in their own keys (default: transpose each to C major / A minor)",
    )
    pp.add_argument("--workers", type=int, default=0, help="processes (0: all cores)")
    pp.add_argument("--strict", action="store_true", help="stop at the first bad file (exit 3)")
    pp.add_argument("--force", action="store_true", help="rebuild even if the cache is up to date")
    pp.add_argument("--timeout", type=float, default=FILE_TIMEOUT, help="seconds one file may take to read")
    pp.add_argument(
        "--memory-budget",
        type=float,
        default=PREPARE_BUDGET_MB,
        metavar="MIB",
        help="memory the whole prepare may use, reader processes included (it starts only as many "
        f"readers as fit, each reading one file within {music.READ_BUDGET_MB} MiB)",
    )
    pp.add_argument("--quiet", action="store_true", help="no progress bar")


def prepare_command(args) -> int:
    """Run the prepare command on parsed `prepare_arguments`; returns its exit code."""
    try:
        cfg = DataConfig(
            segment_bars=args.segment_bars,
            lowest_pitch=args.lowest_pitch,
            num_pitches=args.pitches,
            velocity_threshold=args.velocity_threshold,
            key_normalize=not args.keep_key,
        )
    except ValueError as e:
        print(
            f"error: {str(e).replace('data.num_pitches', '--pitches').replace('data.', '--').replace('_', '-')}",
            file=sys.stderr,
        )
        return 2
    if args.workers < 0:
        print(f"error: --workers must be 0 (all cores) or more, got {args.workers}", file=sys.stderr)
        return 2
    try:
        report = prepare(
            args.src,
            args.out,
            cfg,
            workers=args.workers or None,
            strict=args.strict,
            progress=not args.quiet,
            force=args.force,
            timeout=args.timeout,
            memory_budget=args.memory_budget,
        )
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    print(summary(report))
    return 0


def verify_command(path: str) -> int:
    """`verify OUT`: check everything of a prepared cache, checksums included; returns the exit code."""
    try:
        verify(path, checksums=True)
    except (CacheError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{path}: sizes, song index and checksums match its report")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog=program("python -m vaejax.data"),
        description=data.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    prepare_arguments(sub.add_parser("prepare", help="turn LPD npz / MIDI files into a prepared bar cache"))
    vf = sub.add_parser("verify", help="check a prepared cache's sizes, song index and checksums")
    vf.add_argument("out", help="a prepared dataset folder")
    dm = sub.add_parser("demo", help="write the synthetic demo corpus")
    dm.add_argument("out", nargs="?", default="data/demo")
    dm.add_argument("--songs", type=int, default=96)
    dm.add_argument("--seed", type=int, default=0)
    dl = sub.add_parser("download", help="download and unpack an archive (e.g. LPD-5) into a folder")
    dl.add_argument("url")
    dl.add_argument("out")
    dl.add_argument("--sha256", default=None, help="expected checksum of the archive")
    args = p.parse_args(argv)

    if args.cmd == "demo":
        from vaejax import demo

        if not 1 <= args.songs <= 100_000 or not 0 <= args.seed < 2**31:
            print(
                f"error: --songs must be from 1 to 100000 and --seed from 0 to {2**31 - 1}, got {args.songs} and "
                f"{args.seed}",
                file=sys.stderr,
            )
            return 2
        n = demo.write_corpus(args.out, songs=args.songs, seed=args.seed)
        print(f"wrote {n} SYNTHETIC demo songs to {args.out}")
        return 0
    if args.cmd == "verify":
        return verify_command(args.out)
    if args.cmd == "download":
        from vaejax import download

        try:
            path = download.fetch(args.url, args.out, sha256=args.sha256)
        except download.DownloadError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"unpacked into {path}")
        return 0
    return prepare_command(args)


if __name__ == "__main__":
    sys.exit(main())
