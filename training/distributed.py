"""Training on several devices: one process per device, started by torchrun.

`torchrun --nproc-per-node=N -m facefleet.cli train ...` starts N processes and tells each
its place through WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. `LaunchSettings`
reads those five: they are the launcher's contract (its own names, no FACEFLEET_ prefix),
not facefleet settings, and reading them before the process group exists lets a partial or
contradictory launch, or a batch that cannot be split, be refused in one line at once,
instead of every process waiting for peers that never come. torch.distributed's `env://`
rendezvous then reads the same variables itself.

Without WORLD_SIZE, RANK and LOCAL_RANK (a plain `facefleet train`), or with WORLD_SIZE 1,
`launch` returns the one-process context: every collective below is then a no-op.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from facefleet.core.errors import FacefleetError

T = TypeVar("T")

LAUNCH_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class LaunchSettings(BaseSettings):
    """What torchrun (or another launcher speaking its protocol) tells a process."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    world_size: int | None = None
    rank: int | None = None
    local_rank: int | None = None
    master_addr: str | None = None
    master_port: int | None = None

    @property
    def launched(self) -> bool:
        """Started as one of several processes (the rendezvous address alone says nothing:
        some clusters set it for every job)."""
        return any(v is not None for v in (self.world_size, self.rank, self.local_rank))


def read_launch() -> LaunchSettings:
    try:
        return LaunchSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "?"
        raise FacefleetError(
            f"bad distributed launch: {name}={first.get('input')!r} is not an integer "
            "(start the processes with torchrun)"
        ) from None


@dataclass
class Distributed:
    """This process's place among the training processes, and the few collectives the
    trainer needs (each a no-op in a one-process run)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: str = "cpu"
    backend: str | None = None  # set while a process group is initialised

    @property
    def active(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> tuple[slice, float]:
        """This process's part of a batch of `n` (at least 2) and the weight of its loss.

        The parts are contiguous, their sizes differ by at most one and each holds at least
        two faces (BatchNorm); each weighs by its size, `size * world_size / n`, so that
        DDP's mean of the processes' gradients is the gradient of the batch's mean loss (1
        for the even parts of a full batch). A process left without faces (a last batch of
        under two per process) runs on the batch's first two with weight 0: every process
        must take part in every step."""
        active = min(self.world_size, n // 2)
        if self.rank >= active:
            return slice(0, 2), 0.0
        size, extra = divmod(n, active)
        start = self.rank * size + min(self.rank, extra)
        size += 1 if self.rank < extra else 0
        return slice(start, start + size), size * self.world_size / n

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over all processes (float64)."""
        if not self.active:
            return list(values)
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def sum_(self, tensor: Any) -> Any:
        """`tensor` summed over all processes, in place."""
        if self.active:
            import torch.distributed as dist

            dist.all_reduce(tensor)
        return tensor

    def broadcast(self, value: T) -> T:
        """Rank 0's `value` (any picklable object), on every process."""
        if not self.active:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def main_first(self, work: Callable[[], T]) -> T:
        """`work()` on rank 0, then on the others (which then read what rank 0 cached on
        disk): no two processes write the same cache file at once. When rank 0 fails the
        others stop too, with its reason, instead of waiting for it."""
        if not self.active:
            return work()
        failure: str | None = None
        if self.is_main:
            try:
                result = work()
            except BaseException as exc:
                self.broadcast(str(exc) or type(exc).__name__)
                raise
            self.broadcast(failure)
            return result
        failure = self.broadcast(failure)
        if failure is not None:
            raise FacefleetError(f"stopped: rank 0 failed preparing the data ({failure})")
        return work()

    def close(self) -> None:
        if self.active:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.backend = None


def launch(device: str, batch_size: int, settings: LaunchSettings | None = None) -> Distributed:
    """This process's context: one process, or one of a torchrun launch with its process
    group initialised (gloo on the CPU, nccl on CUDA with device cuda:LOCAL_RANK). Every
    inconsistency is a FacefleetError, raised before any process waits for another."""
    launch_env = settings if settings is not None else read_launch()
    if not launch_env.launched:
        return Distributed(device=device)
    missing = [name for name in LAUNCH_VARIABLES if getattr(launch_env, name.lower()) in (None, "")]
    if missing:
        raise FacefleetError(
            f"incomplete distributed launch: {', '.join(missing)} not set (a process of a "
            f"multi-process run needs all of {', '.join(LAUNCH_VARIABLES)}; start the "
            "processes with torchrun)"
        )
    world = int(launch_env.world_size)  # type: ignore[arg-type]
    rank = int(launch_env.rank)  # type: ignore[arg-type]
    local_rank = int(launch_env.local_rank)  # type: ignore[arg-type]
    if world < 1 or not 0 <= rank < world or not 0 <= local_rank < world:
        raise FacefleetError(
            f"inconsistent distributed launch: RANK {rank}, LOCAL_RANK {local_rank} with "
            f"WORLD_SIZE {world} (ranks run from 0 to WORLD_SIZE - 1)"
        )
    if world == 1:
        return Distributed(device=device)
    if batch_size % world or batch_size < 2 * world:
        raise FacefleetError(
            f"--batch-size {batch_size} cannot be split over {world} processes: give a "
            f"multiple of {world}, at least {2 * world} (the batch is global: each process "
            f"trains on batch-size / {world} images of every batch, two at least for "
            "BatchNorm)"
        )
    import torch
    import torch.distributed as dist

    device_id = None
    if device.startswith("cuda"):
        visible = torch.cuda.device_count()
        if local_rank >= visible:
            raise FacefleetError(
                f"LOCAL_RANK {local_rank} has no GPU: {visible} visible on this machine "
                f"(start at most {visible} processes per node)"
            )
        torch.cuda.set_device(local_rank)
        device, backend = f"cuda:{local_rank}", "nccl"
        device_id = torch.device(device)
    else:
        backend = "gloo"
    try:
        dist.init_process_group(backend, init_method="env://", device_id=device_id)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FacefleetError(
            f"the distributed launch did not start ({backend}): {reason}"
        ) from None
    context = Distributed(world, rank, local_rank, device, backend)
    if dist.get_world_size() != world or dist.get_rank() != rank:
        got = f"rank {dist.get_rank()} of {dist.get_world_size()}"
        context.close()
        raise FacefleetError(
            f"inconsistent distributed launch: the process group has this process as {got}, "
            f"the environment says RANK {rank} of WORLD_SIZE {world}"
        )
    return context
