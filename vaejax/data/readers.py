"""The crash-tolerant reader pool `vaejax.data.prepare` uses: songs read and packed into bars by as many reader
processes as the memory budget allows (`readers_for`); a file that takes too long, or whose reader dies (out of
memory, a crash), costs that file only, its reader is replaced, and readers end with their parent, even after
`kill -9`. With one reader, files are read in the calling process under a time limit."""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time

from vaejax import music
from vaejax.config import DataConfig
from vaejax.data.cache import pack_song


class PrepareError(Exception):
    """Raised for unusable input; `code` is the command's exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def _work(args: tuple[str, DataConfig]):
    """Worker: one file -> (path, song id, error, packed bars, number of bars, non-empty bars per track,
    transposition applied)."""
    path, cfg = args
    try:
        song = music.read_song(path, cfg)
        shift = music.key_shift(song.roll, cfg.lowest_pitch) if cfg.key_normalize else 0
        packed = pack_song(music.transpose(song.roll, shift), cfg)  # [n, 5, steps, P/8]
        if packed.shape[0] == 0:
            raise music.BadSong("shorter than one segment")
        nonempty = packed.any(axis=(2, 3)).sum(axis=0)  # a bar is empty when all its bytes are zero
        return path, song.name, None, packed.tobytes(), packed.shape[0], nonempty, shift
    except music.BadSong as e:
        return _failed(path, str(e))
    except Exception as e:  # keep the batch going; report the file
        return _failed(path, f"unexpected {type(e).__name__}: {str(e)[:200]}")


def _failed(path: str, reason: str):
    return path, None, reason, b"", 0, None, 0


FILE_TIMEOUT = music.READ_TIMEOUT
"""Seconds one file may take to read in `prepare` before it is skipped (its reader is stopped)."""
WORKER_MB = 160
"""Resident memory of an idle reader process (Python, NumPy, pretty_midi), measured."""
PREPARE_BUDGET_MB = 2048
"""Memory `prepare` may use as a whole, its reader processes included (`prepare --memory-budget`): it starts
only as many readers as fit, each reading within `music.READ_BUDGET_MB`, and holds at most `HOLD_MB` of
results waiting for an earlier slow file."""
HOLD_MB = 256
PARENT_MB = 300
"""The parent's own share of the budget (its interpreter, the index, the write buffers)."""


def readers_for(budget_mb: float, workers: int) -> int:
    """How many reader processes fit `budget_mb` (at most `workers`); PrepareError when not even one does."""
    per = WORKER_MB + music.READ_BUDGET_MB
    fit = int((budget_mb - PARENT_MB - HOLD_MB) // per)
    if fit < 1:
        raise PrepareError(
            f"--memory-budget {budget_mb:g} MiB is too small: prepare needs at least "
            f"{PARENT_MB + HOLD_MB + per} MiB (one reader of {per} MiB, {PARENT_MB + HOLD_MB} MiB "
            f"for itself)",
            2,
        )
    return max(1, min(workers, fit))


def _work_in_process(task, timeout: float):
    """`_work` in this process, stopped after `timeout` seconds where a timer signal can be used."""
    try:
        with music.time_limit(timeout):
            return _work(task)
    except music.ReadTimeout:
        return _failed(task[0], f"took longer than {timeout:g} s to read (skipped)")


def _die_with(parent: int) -> None:
    """Make this reader process end when `parent` does, even after `kill -9` of the parent: the kernel's
    parent-death signal where Linux offers it, and a watchdog thread that polls the parent's pid everywhere."""
    import signal

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def _serve(conn, parent: int | None = None) -> None:
    """A reader process: files in, results out, until told to stop (or its parent is gone)."""
    if parent is not None:
        _die_with(parent)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        conn.send(_work(task))


def _read_files(tasks: list, workers: int, timeout: float, method: str):
    """Results of `_work` for every task, in task order. With several workers each file is read in a
    worker process: one that takes longer than `timeout` or kills its process (out of memory, a crash)
    costs that file only; the process is replaced and the batch goes on."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield _work_in_process(task, timeout)
        return
    from multiprocessing.connection import wait

    ctx = mp.get_context(method)

    def start():
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(child, os.getpid()), daemon=True)
        proc.start()
        child.close()
        return {"proc": proc, "conn": parent, "task": None, "since": 0.0}

    slots = [start() for _ in range(min(workers, len(tasks)))]
    window = 16 * len(slots)  # results waiting for an earlier slow file are bounded, in number and in bytes
    done: dict[int, tuple] = {}
    held = 0
    sent = emitted = 0
    try:
        while emitted < len(tasks):
            for slot in slots:
                if (
                    slot["task"] is None
                    and sent < len(tasks)
                    and sent < emitted + window
                    and (held < HOLD_MB << 20 or sent == emitted)
                ):
                    slot["conn"].send(tasks[sent])
                    slot["task"], slot["since"] = sent, time.monotonic()
                    sent += 1
            busy = [slot for slot in slots if slot["task"] is not None]
            wait([x for slot in busy for x in (slot["conn"], slot["proc"].sentinel)], timeout=0.25)
            for i, slot in enumerate(slots):
                k = slot["task"]
                if k is None:
                    continue
                result = None
                try:
                    if slot["conn"].poll():
                        result = slot["conn"].recv()
                except (EOFError, OSError):
                    pass
                dead = not slot["proc"].is_alive()
                if result is None and dead:
                    code = slot["proc"].exitcode
                    how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                    result = _failed(tasks[k][0], f"its reader process died ({how}; out of memory?)")
                elif result is None and time.monotonic() - slot["since"] > timeout:
                    result = _failed(tasks[k][0], f"took longer than {timeout:g} s to read (skipped)")
                    slot["proc"].kill()
                    dead = True
                if result is None:
                    continue
                done[k] = result
                held += len(result[3])
                slot["task"] = None
                if dead:  # a fresh reader takes its place
                    slot["proc"].join(1)
                    slot["conn"].close()
                    slots[i] = start()
            while emitted in done:
                result = done.pop(emitted)
                held -= len(result[3])
                yield result
                emitted += 1
    finally:
        for slot in slots:
            try:
                slot["conn"].send(None)
            except (OSError, ValueError):
                pass
        for slot in slots:
            slot["proc"].join(0.5)
            if slot["proc"].is_alive():
                slot["proc"].kill()
                slot["proc"].join(1)
