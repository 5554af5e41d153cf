"""Several processes for one training or evaluation: detectron2's ``launch``, also on CPU and under
``torchrun``.

detectron2 v0.6's ``launch`` asserts CUDA and always uses NCCL; a run started by ``torchrun`` (one
process per rank, the rank in the environment) is not recognised by it, so each process would
train alone and write into the same folder.  ``launch`` here:

* ``--num-gpus N`` (N processes on this machine, ``--num-machines`` / ``--machine-rank`` /
  ``--dist-url`` for several machines): spawns the processes like detectron2, with NCCL and one
  GPU per process when CUDA has enough devices, else with gloo on CPU;
* under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment): joins the process group the
  environment describes (``env://``) instead of spawning;
* sets detectron2's per-machine process group (``comm.get_local_rank``), and on CPU gives each
  process its share of the cores (``torch.set_num_threads``).

Every rank builds the same model from the same seed, DistributedDataParallel broadcasts rank 0's
weights and averages the gradients, so the ranks hold identical weights; only rank 0 writes
checkpoints, metrics and evaluation results (detectron2's convention; ranks > 0 log to
``log.txt.rank<r>``).
"""

import logging
import os
import sys
import tempfile
import uuid
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.utils import comm

__all__ = ["DEFAULT_TIMEOUT", "launch", "launch_from_args", "torchrun_world_size"]

DEFAULT_TIMEOUT = timedelta(minutes=30)


def torchrun_world_size() -> int:
    """The number of processes ``torchrun`` started this one among (1 when not under it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _backend(processes_per_machine: int) -> str:
    if torch.cuda.is_available():
        if torch.cuda.device_count() < processes_per_machine:
            raise RuntimeError(
                f"{processes_per_machine} processes per machine need as many GPUs; this machine "
                f"has {torch.cuda.device_count()}"
            )
        return "nccl"
    return "gloo"


def _local_group(processes_per_machine: int) -> None:
    """detectron2's per-machine process group (upstream main has a function for it)."""
    if hasattr(comm, "create_local_process_group"):
        comm.create_local_process_group(processes_per_machine)
        return
    machine = dist.get_rank() // processes_per_machine
    for i in range(dist.get_world_size() // processes_per_machine):
        group = dist.new_group(
            list(range(i * processes_per_machine, (i + 1) * processes_per_machine))
        )
        if i == machine:
            comm._LOCAL_PROCESS_GROUP = group


def _run_rank(main_func, args, backend, processes_per_machine, local_rank):
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes_per_machine))
    _local_group(processes_per_machine)
    comm.synchronize()
    result = main_func(*args)
    comm.synchronize()  # every rank done before any exits
    return result


def _end_rank_process():
    """End a rank's process once its work is done, flushed, without the interpreter's teardown.

    gloo's threads abort a process's normal exit now and then ("terminate called without an
    active exception", SIGABRT: once in a few runs, with or without ``destroy_process_group``),
    which turns a finished run into a failed one.  Everything a run writes is closed by then
    (checkpoints and JSON files atomically, the trainer's writers in ``after_train``); the log
    handlers and the standard streams are flushed here, then the process ends with status 0.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _worker(
    local_rank, main_func, world_size, processes_per_machine, machine_rank, dist_url, args, timeout
):
    backend = _backend(processes_per_machine)
    dist.init_process_group(
        backend=backend,
        init_method=dist_url,
        world_size=world_size,
        rank=machine_rank * processes_per_machine + local_rank,
        timeout=timeout,
    )
    _run_rank(main_func, args, backend, processes_per_machine, local_rank)
    _end_rank_process()


def launch(
    main_func,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url=None,
    args=(),
    timeout=DEFAULT_TIMEOUT,
):
    """Run ``main_func(*args)`` in ``num_machines * num_gpus_per_machine`` processes (detectron2's
    signature; on CPU ``num_gpus_per_machine`` is the number of processes), or in the processes
    ``torchrun`` started.  One process and no ``torchrun``: ``main_func`` runs here and its result
    is returned.  Several: once ``main_func`` has returned on every rank, each rank's process ends
    with status 0 (``_end_rank_process``; under ``torchrun`` this one too, so nothing after
    ``launch`` runs there); a rank that raises ends the run with its error."""
    if torchrun_world_size() > 1:
        if num_gpus_per_machine * num_machines > 1:
            raise ValueError(
                "Under torchrun the processes are torchrun's (--nproc_per_node, --nnodes): leave "
                "--num-gpus and --num-machines at 1"
            )
        per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", torchrun_world_size()))
        backend = _backend(per_machine)
        dist.init_process_group(backend=backend, init_method="env://", timeout=timeout)
        _run_rank(main_func, args, backend, per_machine, int(os.environ["LOCAL_RANK"]))
        _end_rank_process()
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        return main_func(*args)
    rendezvous_file = None
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError("several machines need --dist-url tcp://<first machine>:<port>")
        # One machine: meet through a new file rather than a free port (a port found free can be
        # taken by another run before the first process listens on it).
        rendezvous_file = os.path.join(tempfile.gettempdir(), f"aamn_rendezvous_{uuid.uuid4().hex}")
        dist_url = f"file://{rendezvous_file}"
    try:
        mp.start_processes(
            _worker,
            nprocs=num_gpus_per_machine,
            args=(
                main_func,
                world_size,
                num_gpus_per_machine,
                machine_rank,
                dist_url,
                args,
                timeout,
            ),
            daemon=False,
            start_method="spawn",
        )
    except mp.ProcessExitedException as e:  # the rank printed its own error
        raise SystemExit(
            f"error: process {e.error_index} of {world_size} exited with status "
            f"{e.exit_code}; its message is above"
        ) from None
    except mp.ProcessRaisedException as e:  # the rank's traceback is in the message
        raise SystemExit(f"error: process {e.error_index} of {world_size} failed:\n{e}") from None
    finally:
        if rendezvous_file and os.path.exists(rendezvous_file):
            os.remove(rendezvous_file)


def launch_from_args(main_func, args, main_args=()):
    """``launch(main_func, ..., args=main_args)`` with the processes of a command line
    (``args.num_gpus``, ``num_machines``, ``machine_rank``, ``dist_url``, as ``train_net.py`` and
    ``infer.py`` take them)."""
    return launch(
        main_func,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=tuple(main_args),
    )
