"""Choosing the accelerator, joining a multi-host job, and sharding batches over devices."""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

PLATFORMS = ("cpu", "gpu", "tpu")


class AcceleratorError(RuntimeError):
    pass


def available_platforms() -> list[str]:
    found = []
    for name in PLATFORMS:
        try:
            if jax.devices(name):
                found.append(name)
        except RuntimeError:
            pass
    return found


def select(accelerator: str = "auto") -> list[jax.Device]:
    """Local devices of the requested backend; never falls back silently.

    Raises:
      AcceleratorError: the backend is absent, with the list of those available.
    """
    if accelerator not in ("auto",) + PLATFORMS:
        raise AcceleratorError(f"unknown accelerator {accelerator!r}; choose auto, cpu, gpu or tpu")
    if accelerator == "auto":
        devices = jax.local_devices()
    else:
        try:
            devices = jax.local_devices(backend=accelerator)
        except RuntimeError:
            devices = []
        if not devices:
            have = ", ".join(available_platforms()) or "none"
            raise AcceleratorError(
                f"--accelerator {accelerator}: no {accelerator.upper()} found by JAX "
                f"(available: {have}). Install the matching jax package or choose "
                f"another accelerator."
            )
    jax.config.update("jax_default_device", devices[0])
    return devices


def maybe_initialize_distributed(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> bool:
    """Join a multi-host job when one is configured; return whether this is one.

    Explicit arguments win; otherwise `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`
    are read; on a Cloud TPU pod slice (`TPU_WORKER_HOSTNAMES` with several hosts) JAX finds everything
    itself.
    """
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and os.environ.get("JAX_NUM_PROCESSES"):
        num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    if process_id is None and os.environ.get("JAX_PROCESS_ID"):
        process_id = int(os.environ["JAX_PROCESS_ID"])
    if coordinator and num_processes and num_processes > 1:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
        return True
    if "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
        jax.distributed.initialize()
        return True
    return False


class DataParallel:
    """A 1-D mesh over every device of the job: parameters replicated, batches split on `axis`."""

    def __init__(self, devices: list[jax.Device] | None = None):
        if devices is None or jax.process_count() > 1:
            devices = jax.devices()  # global devices in a multi-host job
        self.mesh = Mesh(np.array(devices), ("data",))
        self.replicated = NamedSharding(self.mesh, P())

    @property
    def size(self) -> int:
        return self.mesh.size

    @property
    def platform(self) -> str:
        return self.mesh.devices.flat[0].platform

    def batch_sharding(self, ndim: int, axis: int) -> NamedSharding:
        spec = [None] * ndim
        spec[axis] = "data"
        return NamedSharding(self.mesh, P(*spec))

    def shard(self, local: np.ndarray, axis: int = 1) -> jax.Array:
        """This host's part of a global batch -> a global array split over devices along `axis`."""
        return jax.make_array_from_process_local_data(self.batch_sharding(local.ndim, axis), local)

    def replicate(self, tree):
        return jax.device_put(tree, self.replicated)
