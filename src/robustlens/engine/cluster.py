"""Runs past one machine: ``--shard I/K`` slices for Slurm arrays, ``--ray ADDRESS`` for a Ray cluster.

Both keep the rows of the single-process run: image idx is always smoothed with the seed ``SEED + idx``
(``cluster_worker.smooth_image``, the one function the local loop and every Ray worker call), so where an
image runs changes only its time column.

**Shards.** ``--shard I/K`` keeps every K-th position of the run's index list starting at the I-th
(``positions[I::K]``), so the K shards are disjoint and their union is exactly the single run's list;
the shard and the full list's length are recorded in the settings line, and ``robustlens merge`` checks
them (engine/cli_merge.py).

**Ray.** The work still to do is cut into blocks (:class:`Task`): consecutive images for certify /
predict / radius decisions, whole PGD batches for the attack curves and the transfer matrix, one chunk
for a constructed dataset (engine/cluster_jobs.py). Each worker is a Ray actor
(``cluster_worker.BlockWorker``) that loads what the run needs once — a model by zoo name, or a file path
every node can read, checked against the driver's weights SHA-256 — and runs whole blocks. The driver
keeps one block in flight per worker, hands the results back strictly in block order as they arrive (the
caller writes them through its resumable file, so a killed driver resumes from what was written, as a
single-process run does), and reports progress over all workers. A worker that dies mid-block is
replaced and its block rerun; since a block's results go out only once the block is back, nothing is
lost or written twice. Ray is imported only when ``--ray`` is given.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator

from .cli import CLIError, nonnegative_float, positive_float, positive_int
from .cluster_worker import BlockWorker

CONNECT_TIMEOUT_S = 30.0  # the default bound on reaching a cluster (--ray-timeout)
BLOCK_ATTEMPTS = 3  # a block that kills this many workers in a row is a failure, not bad luck
WORKER_START_TIMEOUT_S = 300.0  # no worker ready and none busy for this long: the cluster has no room


# ---------------------------------------------------------------- command-line pieces (no ray needed)


def shard_spec(text: str) -> tuple[int, int]:
    """argparse type of --shard: 'I/K' with 0 ≤ I < K."""
    parts = text.split("/")
    try:
        index, count = (int(p) for p in parts)
        if len(parts) != 2:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/K (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"I/K needs K ≥ 1 and 0 ≤ I < K, got {text!r}")
    return index, count


def shard_positions(positions: list[int], shard: tuple[int, int] | None) -> list[int]:
    """The shard's slice of the run's positions: every K-th from the I-th (all of them without a shard)."""
    if shard is None:
        return positions
    index, count = shard
    return positions[index::count]


def shard_settings(shard: tuple[int, int] | None, total: int) -> dict:
    """What a sharded run adds to its settings line: which slice, and how many images the whole run has
    (so merge can tell a missing shard or a short one). Nothing without --shard, so unsharded files keep
    the settings they had."""
    if shard is None:
        return {}
    index, count = shard
    return {"shard": {"index": index, "count": count, "images": total}}


def add_cluster_arguments(p, block_help: str = "images per block sent to a worker (default: about 4 blocks per "
                                                  "worker, at most 16)") -> None:
    group = p.add_argument_group("Ray cluster (pip install robustlens[cluster])")
    group.add_argument("--ray", metavar="ADDRESS",
                       help="run on Ray: 'local' starts one on this machine, 'auto' joins the one `ray start` "
                            "runs here, or HOST:PORT / ray://HOST:PORT of a head node")
    group.add_argument("--workers", type=positive_int, help="Ray workers (default: as many as the cluster fits)")
    group.add_argument("--gpus-per-worker", type=nonnegative_float, default=0.0,
                       help="GPUs each worker holds (a fraction such as 0.5 lets two workers share one GPU)")
    group.add_argument("--cpus-per-worker", type=positive_float, default=1.0, help="CPUs each worker holds")
    group.add_argument("--block", type=positive_int, help=block_help)
    group.add_argument("--ray-timeout", type=positive_float, default=CONNECT_TIMEOUT_S,
                       help="seconds to wait for the cluster before giving up")


def wants_ray(args) -> bool:
    return getattr(args, "ray", None) is not None


def check_local_only_flags(args) -> None:
    """--workers and friends mean nothing without --ray: say so instead of running on one process."""
    if wants_ray(args):
        return
    given = [flag for flag, value in (("--workers", args.workers), ("--block", args.block),
                                      ("--gpus-per-worker", args.gpus_per_worker or None),
                                      ("--cpus-per-worker", None if args.cpus_per_worker == 1.0 else 1))
             if value is not None]
    if given:
        raise CLIError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --ray ADDRESS (or --ray local)")


# ---------------------------------------------------------------- the unit of work


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how a run goes on Ray: ``address`` as --ray takes it, the rest as the flags of the same
    names (``block`` None: the run's default)."""
    address: str
    workers: int | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    block: int | None = None
    timeout: float = CONNECT_TIMEOUT_S
    stay_connected: bool = False  # keep Ray and the idle workers up after the run (the app's runs)


def cluster_options(args) -> ClusterOptions:
    return ClusterOptions(args.ray, args.workers, float(args.gpus_per_worker or 0.0), float(args.cpus_per_worker),
                          args.block, float(args.ray_timeout))


@dataclass
class Task:
    """One block for a worker: the run's ``job`` (plain values), the block's arguments (``payload``; Ray
    object refs among them are fetched by the worker) and how many progress units it is worth."""
    job: dict
    payload: tuple
    size: int


def job_spec(args, model, sigma: float, settings: dict, command: str | None = None) -> dict:
    """Everything a worker needs to smooth images as this run does (plain data, sent to every worker)."""
    command = command or ("certify" if hasattr(args, "n0") else "predict")
    return dict(command=command, model=str(args.model), weights_sha256=settings["weights_sha256"],
                classes=len(model.meta.classes), sigma=float(sigma), n0=getattr(args, "n0", None), n=args.n,
                alpha=args.alpha, batch=args.batch, seed=args.seed, eager=bool(args.eager), threads=args.threads,
                radius=getattr(args, "radius", None), max_n=getattr(args, "max_n", None),
                precision=getattr(args, "precision", "fp32"),
                gpus=float(getattr(args, "gpus_per_worker", 0.0) or 0.0))


# ---------------------------------------------------------------- Ray: connecting


def import_ray():
    try:
        import ray
    except ImportError:
        raise CLIError("--ray needs Ray: install robustlens[cluster] (pip install 'robustlens[cluster]')") from None
    return ray


def _reachable(address: str, timeout: float) -> None:
    """A TCP connect to HOST:PORT first, so an unreachable head fails in one line within ``timeout``."""
    hostport = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise CLIError(f"--ray {address}: expected local, auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as failure:
        raise CLIError(f"cannot reach the Ray cluster at {hostport}: {failure.strerror or failure}") from None


# the address a long-lived caller (the app) asked to stay connected to, while it is
_HELD: list[str] = []


def connect(address: str, timeout: float, stay: bool = False) -> Callable[[], None]:
    """Join (or for 'local' start) a Ray cluster within ``timeout`` seconds; returns what to call at the
    end (shutdown of what this call started; nothing if Ray was already up in this process, or with
    ``stay``: the app keeps its cluster and idle workers between runs, and switches when the address
    it asks for changes)."""
    ray = import_ray()
    if ray.is_initialized() and _HELD and _HELD[0] != address:  # the app's earlier choice: leave it
        ray.shutdown()
        _HELD.clear()
        _IDLE.clear()
    if ray.is_initialized():  # a caller (a test session, a long-lived program) already holds a cluster
        current = ray.get_runtime_context().gcs_address
        if address in ("local", "auto") or address.removeprefix("ray://") == current:
            return _keep_ray
        _reachable(address, min(timeout, 10.0))
        raise CLIError(f"this process is already connected to the Ray cluster at {current}, not {address}")
    options = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address == "local":
        target = None
    elif address == "auto":
        target = "auto"
    else:
        _reachable(address, min(timeout, 10.0))
        target = address
    if target is not None:
        # joining retries the head's GCS about once a second, RAY_gcs_server_port_wait_time_s times (20 by
        # default); a host that answers TCP but is no Ray head then fails after about `timeout` seconds
        os.environ.setdefault("RAY_gcs_server_port_wait_time_s", str(max(1, int(timeout))))
    where = "a local Ray" if target is None else f"the Ray cluster at {address}"
    try:
        ray.init(address=target, **options)  # the main thread: Ray installs its signal handlers there
    except Exception as failure:  # noqa: BLE001 — ConnectionError, RuntimeError, ValueError: one line
        why = " ".join(str(failure).split()).split(". ")[0]
        raise CLIError(f"could not join {where}: {why}") from None
    if stay:
        _HELD[:] = [address]
        return _keep_ray
    return ray.shutdown


# ---------------------------------------------------------------- Ray: running blocks


def default_block(todo: int, workers: int) -> int:
    return max(1, min(16, math.ceil(todo / (4 * workers))))


def _actor_class(ray, gpus: float, cpus: float):
    # no restarts by Ray itself: the driver replaces a dead worker and knows which block to rerun
    return ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=0, max_task_retries=0)(BlockWorker)


def _worker_count(ray, requested: int | None, gpus: float, cpus: float) -> int:
    resources = ray.cluster_resources()
    total_cpus, total_gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    if gpus > total_gpus:
        raise CLIError(f"--gpus-per-worker {gpus:g} but the cluster has {total_gpus:g} GPUs")
    if cpus > total_cpus:
        raise CLIError(f"--cpus-per-worker {cpus:g} but the cluster has {total_cpus:g} CPUs")
    fits = int(total_cpus // cpus)
    if gpus > 0:
        fits = min(fits, int(total_gpus // gpus + 1e-9))
    return requested if requested is not None else max(1, fits)


MakeTasks = Callable[[Callable, int], list]


def run_tasks(options: ClusterOptions, make_tasks: MakeTasks, progress, report: dict | None = None,
              tick: Callable[[], None] | None = None) -> Iterator[tuple[int, object]]:
    """(task number, result) for every task, in the tasks' order, computed by Ray workers.
    ``make_tasks(put, workers)`` gives the :class:`Task` list once the cluster is joined (``put`` is
    ``ray.put``, to ship an array once for several tasks; ``workers`` how many will run); ``progress(k)``
    is called as a task worth k units finishes on any worker; ``report`` gets the workers' "backend" and
    the "workers" count; ``tick()`` is called at least once a second while waiting (a GUI job's
    ``cancel.check``: what it raises stops the run, its workers' blocks abandoned)."""
    ray = import_ray()
    shutdown = connect(options.address, options.timeout, stay=options.stay_connected)
    try:
        workers = _worker_count(ray, options.workers, options.gpus_per_worker, options.cpus_per_worker)
        tasks = make_tasks(ray.put, workers)
        if not tasks:
            return
        pool = WorkerPool(ray, options.gpus_per_worker, options.cpus_per_worker, keep=shutdown is _keep_ray)
        yield from pool.drive(tasks, min(workers, len(tasks)), progress, tick=tick)
        if report is not None:
            report.update(backend=pool.backend, workers=min(workers, len(tasks)))
    finally:
        shutdown()


def run_blocks(args, job: dict, dataset, todo: list[int], progress, report: dict | None = None
               ) -> Iterator[tuple[int, tuple]]:
    """(position, result of :func:`~robustlens.engine.cluster_worker.smooth_image`) for every position of
    ``todo``, in ``todo``'s order, computed by Ray workers in blocks of consecutive positions;
    ``progress(k)`` is called as k more images finish on any worker."""
    if not todo:  # a finished file: nothing to start a cluster for
        return
    options = cluster_options(args)
    blocks: list[list[int]] = []

    def make_tasks(put, workers):
        size = options.block or default_block(len(todo), workers)
        blocks.extend(todo[start:start + size] for start in range(0, len(todo), size))
        return [Task(job, ([dataset.source_index(p) for p in block], put(dataset.images[block].numpy())), len(block))
                for block in blocks]

    for number, results in run_tasks(options, make_tasks, progress, report):
        yield from zip(blocks[number], results)


def _keep_ray() -> None:
    """What connect() returns when Ray was already up in this process: leave it (and our idle workers) up."""


# Idle workers kept between runs while Ray stays up in this process (a test session, a long-lived caller):
# starting a worker (a Python process that imports torch and loads the model) costs seconds.
_IDLE: dict[tuple, list] = {}


class WorkerPool:
    """Workers of one resource shape; ``drive`` runs blocks on them and replaces the ones that die."""

    def __init__(self, ray, gpus: float, cpus: float, keep: bool):
        self.ray, self.keep = ray, keep
        self.actor_class = _actor_class(ray, gpus, cpus)
        # job ids start again in every Ray session; the driver's node id does not: a later session (after
        # a shutdown in this process) never gets an earlier one's workers
        context = ray.get_runtime_context()
        self.key = (context.get_node_id(), context.get_job_id(), gpus, cpus)
        for stale in [key for key in _IDLE if key[:2] != self.key[:2]]:  # an ended session's, gone with it
            del _IDLE[stale]
        self.backend = None

    def drive(self, tasks: list[Task], workers: int, progress, start_timeout: float = WORKER_START_TIMEOUT_S,
              tick: Callable[[], None] | None = None):
        """(task number, result) of every task in order, on ``workers`` workers. Workers are started without
        waiting for one another and join as they are ready (loading what the first task's job needs); a
        dead worker's task goes back to the front of the queue and a new worker is started in its place."""
        from ray.exceptions import RayActorError, RayTaskError

        if not tasks:
            return
        ray = self.ray
        job = tasks[0].job
        pending = deque(range(len(tasks)))  # task numbers not yet handed out (a rerun goes first)
        attempts = [0] * len(tasks)
        in_flight: dict = {}  # run ObjectRef -> (task number, actor)
        starting: dict = {}  # load ObjectRef -> actor
        idle: list = []
        done: dict[int, object] = {}
        next_out, failed_starts, last_progress = 0, 0, time.monotonic()

        def start(actor=None):
            actor = actor or self.actor_class.remote()
            starting[actor.load.remote(job)] = actor

        kept = _IDLE.pop(self.key, []) if self.keep else []
        if kept[workers:]:  # not needed now: they stay idle for a later run
            _IDLE[self.key] = kept[workers:]
        for actor in kept[:workers]:
            start(actor)  # cheap: a kept worker has the model already unless this run's differs
        for _ in range(workers - len(kept[:workers])):
            start()
        try:
            while next_out < len(tasks):
                while idle and pending:
                    number, actor = pending.popleft(), idle.pop()
                    attempts[number] += 1
                    in_flight[actor.run.remote(number, tasks[number].job, *tasks[number].payload)] = (number, actor)
                if tick is not None:
                    tick()
                finished, _ = ray.wait(list(in_flight) + list(starting), num_returns=1, timeout=1.0)
                if finished:
                    last_progress = time.monotonic()
                elif not in_flight and time.monotonic() - last_progress > start_timeout:
                    raise CLIError(f"no worker started within {start_timeout:g} s: the cluster has no free room "
                                   f"for --cpus-per-worker / --gpus-per-worker (see `ray status`)")
                for ref in finished:
                    if ref in starting:
                        actor = starting.pop(ref)
                        try:
                            status = ray.get(ref)
                        except RayTaskError as failure:  # load() itself failed (not a death): one line
                            cause = failure.cause if failure.cause is not None else failure
                            raise CLIError(f"a worker could not start: {' '.join(str(cause).split())}") from None
                        except RayActorError:  # died while starting (or while idle, if kept)
                            failed_starts += 1
                            if failed_starts > BLOCK_ATTEMPTS * workers:
                                raise CLIError(f"{failed_starts} workers died while starting; giving up") from None
                            start()
                            continue
                        if status["error"]:
                            raise CLIError(status["error"])
                        self.backend = status["backend"]
                        idle.append(actor)
                        continue
                    number, actor = in_flight.pop(ref)
                    try:
                        done[number] = ray.get(ref)
                    except RayTaskError as failure:  # the block itself failed: it would fail again
                        cause = failure.cause if failure.cause is not None else failure
                        raise CLIError(f"block {number} failed on a worker: {' '.join(str(cause).split())}") from None
                    except RayActorError:
                        # the worker died (killed, out of memory, node lost): replace it, rerun its block first
                        if attempts[number] >= BLOCK_ATTEMPTS:
                            raise CLIError(f"block {number} killed "
                                           f"{attempts[number]} workers; giving up") from None
                        pending.appendleft(number)
                        start()
                        continue
                    idle.append(actor)
                    progress(tasks[number].size)
                while next_out in done:  # results go out in the tasks' order, each task once
                    yield next_out, done.pop(next_out)
                    next_out += 1
        finally:
            unfinished = [actor for _, actor in in_flight.values()] + list(starting.values())
            for actor in unfinished + ([] if self.keep else idle):
                ray.kill(actor)
            if self.keep:
                _IDLE[self.key] = idle + _IDLE.get(self.key, [])
