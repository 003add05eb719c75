"""What each result file in bench/results records about how it was made: the command, the machine, the date."""

from __future__ import annotations

import datetime
import os
import platform
import sys


def provenance(script: str, argv: list[str] | None = None) -> dict:
    """`command` (as typed, `python bench/SCRIPT ARGS`), `machine` (processor and cores) and `date`."""
    args = argv if argv is not None else sys.argv[1:]
    return {
        "command": f"python bench/{script} " + " ".join(args),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": datetime.date.today().isoformat(),
    }
