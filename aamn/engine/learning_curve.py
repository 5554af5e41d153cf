"""What a training costs and how its validation accuracy grows with it.

Every training (``tools/train_net.py``, any model) writes ``OUTPUT_DIR/compute.json``: the CPU
seconds (user + system, all threads, summed over the training processes) and wall seconds spent
training, its evaluations left out, and the iterations they bought, and
``OUTPUT_DIR/learning_curve.json``: one record per evaluation of ``DATASETS.TEST`` (every
``TEST.EVAL_PERIOD`` iterations and at the end; the validation split, for a learning curve)::

    {"iterations": 1800, "train_cpu_s": 402.1, "train_wall_s": 215.3,
     "results": {"segm": {"P@0.5": ..., "mean_IoU": ...}, ...}}

``TEST.CURVE.STOP_PATIENCE > 0`` ends the training once the curve has converged
(:func:`converged`): the last ``STOP_PATIENCE`` evaluations each added less than
``TEST.CURVE.STOP_MIN_GAIN`` to ``TEST.CURVE.METRIC`` over the best value before them.  The model
is then saved as ``model_final`` at the iteration reached.  With ``TEST.CURVE.DECAY_PERIODS > 0``
a converged curve is not ended at once: its learning rate is multiplied by
``TEST.CURVE.DECAY_FACTOR`` for ``DECAY_PERIODS`` more evaluation periods (records
``"lr_factor"``, ``compute.json``'s ``"decay_from"``), and the training ends after them; a curve
that has not converged by ``DECAY_PERIODS`` periods before ``SOLVER.MAX_ITER`` ends there at its
constant rate, so that it can be extended.

A training resumed (``--resume``) from the iteration the files end at extends them: the curve keeps
its earlier records and the compute counts on from their totals, so a curve is extended by
raising ``SOLVER.MAX_ITER`` and resuming, not redone.  Every checkpoint keeps the curve's state
with the model (the compute so far and the records: ``LearningCurveHook.state_dict``), and both
files are written at every checkpoint (``SOLVER.CHECKPOINT_PERIOD``) before its evaluation, so a
run killed between two checkpoints, or during an evaluation, resumes from its last checkpoint with
its curve and compute (the work after that checkpoint is done again and counted once); an
evaluation the kill interrupted is run first.  A checkpoint written before checkpoints kept that
state resumes from the files when they end at its iteration, and is refused otherwise.
"""

import json
import logging
import os
import time
from typing import Dict, List, Optional, Sequence

import torch

import detectron2.utils.comm as comm
from detectron2.engine import hooks

from ..utils.io import write_json_atomic

__all__ = [
    "COMPUTE_FILE",
    "CURVE_FILE",
    "LearningCurveHook",
    "converged",
    "curve_metric",
    "process_cpu_s",
    "read_json",
]

logger = logging.getLogger("aamn.engine")

COMPUTE_FILE = "compute.json"
CURVE_FILE = "learning_curve.json"


def process_cpu_s() -> float:
    """CPU seconds (user + system) of this process, all its threads."""
    return time.process_time()


def curve_metric(results: Dict, metric: str) -> Optional[float]:
    """``metric`` (``"segm/P@0.5"``: section / name) of one evaluation's results (a single data
    set's ``{section: {name: value}}``, or ``{dataset: {section: ...}}`` of which the first data set
    is read); None when absent."""
    section, _, name = metric.partition("/")
    if section not in results and results:
        results = next(iter(results.values()))
    value = results.get(section, {}).get(name) if isinstance(results, dict) else None
    return None if value is None else float(value)


def converged(values: Sequence[float], min_gain: float, patience: int) -> bool:
    """True when each of the last ``patience`` values exceeds the best value before them by less
    than ``min_gain`` (so a curve that is flat, falls, or rises by less than ``min_gain`` per
    evaluation has converged); False while fewer than ``patience + 1`` values exist or
    ``patience <= 0``.

    >>> converged([28.4, 36.8, 35.8, 35.1], 0.5, 2)
    True
    >>> converged([28.4, 36.8, 37.4, 37.5], 0.5, 2)
    False
    """
    if patience <= 0 or len(values) < patience + 1:
        return False
    best = max(values[:-patience])
    return all(v - best < min_gain for v in values[-patience:])


def read_json(path: str):
    """A JSON file's content, or None when it is missing or not JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class LearningCurveHook(hooks.EvalHook):
    """detectron2's ``EvalHook`` (every ``eval_period`` iterations and at the end), which also
    keeps the training's compute (its evaluations left out), writes ``compute.json`` and
    ``learning_curve.json`` into ``output_dir`` and stops a converged training (module
    docstring).  Every process runs it (the CPU seconds are summed over them); the main process
    writes."""

    def __init__(
        self,
        eval_period: int,
        eval_function,
        output_dir: str,
        metric: str = "segm/P@0.5",
        min_gain: float = 0.5,
        patience: int = 0,
        decay_factor: float = 0.1,
        decay_periods: int = 0,
        checkpoint_period: int = 0,
    ):
        super().__init__(eval_period, eval_function)
        self.output_dir = output_dir
        self.checkpoint_period = checkpoint_period
        self.metric, self.min_gain, self.patience = metric, min_gain, patience
        self.decay_factor, self.decay_periods = decay_factor, decay_periods
        self.decay_from: Optional[int] = None  # the iteration the learning-rate decay began at
        self.records: List[Dict] = []
        self.stop_requested = False
        self._cpu0 = self._wall0 = self._eval_cpu0 = 0.0  # the totals the resumed files end at
        self._cpu_start = self._wall_start = 0.0
        self._eval_cpu = self._eval_wall = 0.0
        self._others_cpu = 0.0  # the other processes' training CPU seconds at the last gather
        self._last_eval_iter = -1

    # ------------------------------------------------------------------ compute
    def _training_compute(self, gather: bool = True) -> Dict[str, float]:
        """The training's CPU and wall seconds so far, evaluations left out, summed over the
        processes (CPU) and from the main process (wall).  ``gather``: every process calls it
        (a collective); otherwise the other processes' CPU seconds are those of the last gather
        (a checkpoint's ``state_dict`` runs in the main process alone)."""
        cpu = process_cpu_s() - self._cpu_start - self._eval_cpu
        wall = time.perf_counter() - self._wall_start - self._eval_wall
        if comm.get_world_size() > 1:
            if gather:
                self._others_cpu = sum(comm.all_gather(cpu)) - cpu
            cpu += self._others_cpu
        return {"train_cpu_s": self._cpu0 + cpu, "train_wall_s": self._wall0 + wall}

    def before_step(self):
        """With several processes, their CPU seconds gathered before a step whose end saves a
        checkpoint (``state_dict`` cannot gather: the checkpointer runs in the main process)."""
        next_iter = self.trainer.iter + 1
        saves = self.checkpoint_period > 0 and next_iter % self.checkpoint_period == 0
        if comm.get_world_size() > 1 and (saves or next_iter >= self.trainer.max_iter):
            self._training_compute()

    def state_dict(self) -> Dict:
        """What a checkpoint keeps of the curve (detectron2 saves every hook's ``state_dict`` with
        the trainer's): the compute so far, the records and the decay, as they stand at the
        iteration a resume from that checkpoint starts at.  Written with the model in one file, so
        a resume counts on exactly whatever the JSON files hold (a run killed between a checkpoint
        and their writing, or one resumed from an older checkpoint than the newest)."""
        compute = self._training_compute(gather=False) if self._wall_start else {}
        return {
            "iterations": self.trainer.iter + 1,
            **compute,
            "eval_cpu_s": self._eval_cpu0 + self._eval_cpu,
            "records": list(self.records),
            "decay_from": self.decay_from,
        }

    def load_state_dict(self, state: Dict) -> None:
        """Keep the state of the checkpoint a resume starts from (``before_train`` applies it)."""
        self._resumed = dict(state)

    def _resume_from(self, start: int) -> Optional[Dict]:
        """The compute and records a training resumed at ``start`` counts on from: its
        checkpoint's (``state_dict``), else ``compute.json`` and ``learning_curve.json`` when they
        end at ``start`` (a checkpoint written before checkpoints kept them); None when there is
        nothing to count on (no ``compute.json``: a warning).

        Raises:
            RuntimeError: the files end at another iteration and the checkpoint keeps no state:
                resuming would lose the curve's points or miscount its compute.
        """
        curve = read_json(os.path.join(self.output_dir, CURVE_FILE)) or []
        state = getattr(self, "_resumed", None)
        if state and state.get("iterations") == start and "train_cpu_s" in state:
            records = [r for r in state["records"] if r.get("iterations", 0) <= start]
            if not records or records[-1]["iterations"] != start:
                # the evaluation at the checkpoint's iteration runs after the checkpoint is
                # saved: the file has it when it finished (the same model, so the same point)
                records += [r for r in curve if r.get("iterations") == start][-1:]
            return dict(state, records=records)
        path = os.path.join(self.output_dir, COMPUTE_FILE)
        compute = read_json(path)
        if compute is None:
            logger.warning(f"{path} is missing: the resumed training's compute counts from here")
            return None
        if compute.get("iterations") != start:
            raise RuntimeError(
                f"{path} ends at iteration {compute.get('iterations')}, the checkpoint resumed "
                f"from at {start}, and the checkpoint keeps no curve state: resuming would lose "
                "the curve's points or miscount its compute.  Resume from the checkpoint of "
                f"iteration {compute.get('iterations')} (its file name into last_checkpoint), or "
                f"remove {COMPUTE_FILE} and {CURVE_FILE} to count from here"
            )
        return dict(compute, records=[r for r in curve if r.get("iterations", 0) <= start])

    def before_train(self):
        start = self.trainer.start_iter
        state = self._resume_from(start) if start > 0 else None
        if state is not None:  # a resumed training goes on
            self._cpu0 = float(state.get("train_cpu_s", 0.0))
            self._wall0 = float(state.get("train_wall_s", 0.0))
            self._eval_cpu0 = float(state.get("eval_cpu_s", 0.0))
            self.records = list(state["records"])
            if self.records and self.records[-1]["iterations"] == start:
                self._last_eval_iter = start  # evaluated before it stopped: not again
            decay_from = state.get("decay_from")
            if decay_from is not None and decay_from <= start:  # resumed within its decay
                self.decay_from = int(decay_from)
        self._cpu_start, self._wall_start = process_cpu_s(), time.perf_counter()
        self._decay_learning_rate()
        if self._due(start) and self._last_eval_iter != start:
            self._evaluate(start)  # the evaluation a kill interrupted (its checkpoint was saved)
            self._decay_learning_rate()

    def _due(self, iterations: int) -> bool:
        """Whether an evaluation period ends at ``iterations`` (before ``SOLVER.MAX_ITER``, whose
        evaluation ``after_train`` runs)."""
        return (
            self._period > 0
            and 0 < iterations < self.trainer.max_iter
            and iterations % self._period == 0
        )

    def _decay_learning_rate(self) -> None:
        """Within the decay, each parameter group's learning rate is the scheduler's times
        ``decay_factor`` (set again after every scheduler step: it never compounds)."""
        if self.decay_from is None:
            return
        scheduler = self.trainer.scheduler
        for group, lr in zip(self.trainer.optimizer.param_groups, scheduler.get_last_lr()):
            group["lr"] = lr * self.decay_factor

    def _write(self, iterations: int) -> None:
        compute = dict(self._training_compute(), iterations=iterations)
        compute["eval_cpu_s"] = self._eval_cpu0 + self._eval_cpu
        compute["processes"] = comm.get_world_size()
        compute["threads"] = torch.get_num_threads()
        if self.decay_from is not None:
            compute["decay_from"] = self.decay_from
        if comm.is_main_process():
            write_json_atomic(os.path.join(self.output_dir, COMPUTE_FILE), compute)
            if self.records:
                write_json_atomic(os.path.join(self.output_dir, CURVE_FILE), self.records)

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, iterations: int) -> None:
        self._last_eval_iter = iterations
        compute = self._training_compute()
        cpu, wall = process_cpu_s(), time.perf_counter()
        self._do_eval()  # detectron2's: the evaluation, its scalars into the event storage
        self._eval_cpu += process_cpu_s() - cpu
        self._eval_wall += time.perf_counter() - wall
        results = getattr(self.trainer, "_last_eval_results", None) or {}
        record = dict(compute, iterations=iterations, results=results)
        try:  # the learning rate of the last step before this evaluation (the LRScheduler hook's)
            record["lr"] = self.trainer.storage.history("lr").latest()
        except KeyError:
            pass
        if self.decay_from is not None:
            record["lr_factor"] = self.decay_factor
        self.records.append(record)
        stop, decay = self._decide(iterations)
        if decay:
            self.decay_from = iterations
        self._write(iterations)
        self.stop_requested = self.stop_requested or stop

    def _decide(self, iterations: int):
        """``(stop, decay)`` after the evaluation at ``iterations``: whether the training ends
        now, and whether its learning-rate decay begins (the main process's decision, which every
        process follows)."""
        stop = decay = False
        if self.decay_from is not None:  # within the decay: it ends after its periods
            stop = iterations >= self.decay_from + self.decay_periods * self._period
        else:
            values = [curve_metric(r["results"], self.metric) for r in self.records]
            done = None not in values and converged(values, self.min_gain, self.patience)
            if done and comm.is_main_process():
                logger.info(
                    f"Learning curve converged at iteration {iterations}: the last "
                    f"{self.patience} evaluations each added less than {self.min_gain} "
                    f"{self.metric} ({', '.join(f'{v:.1f}' for v in values)})"
                    + (f"; the learning rate x{self.decay_factor} for {self.decay_periods} "
                       "more evaluation periods" if self.decay_periods > 0 else "")
                )  # fmt: skip
            if self.decay_periods > 0:
                decay = done
                # not converged, no room left for a decay: it ends at its constant rate
                room = self.trainer.max_iter - self.decay_periods * self._period
                stop = not done and iterations >= room
            else:
                stop = done
        if comm.get_world_size() > 1:  # the main process alone has the results: its decision
            stop, decay = comm.all_gather((stop, decay))[0]
        return stop, decay

    def after_step(self):
        next_iter = self.trainer.iter + 1
        checkpoint = self.checkpoint_period > 0 and next_iter % self.checkpoint_period == 0
        due = self._due(next_iter)
        if next_iter < self.trainer.max_iter and (checkpoint or due):
            # the files agree with the checkpoint detectron2's PeriodicCheckpointer (an earlier
            # hook) has just saved: a run killed from here on resumes with its curve and compute
            self._write(next_iter)
        if due:
            self._evaluate(next_iter)
        self._decay_learning_rate()  # after the scheduler's step (an earlier hook)

    def after_train(self):
        """The last evaluation (once the training reached ``max_iter`` or converged; not after a
        failure) and the final ``compute.json`` (not when the resume itself failed: the files
        are left as they were)."""
        if not self._wall_start:  # before_train did not get as far as counting
            del self._func
            return
        done = self.trainer.iter  # the iterations run: the loop has counted past its last one
        if (done >= self.trainer.max_iter or self.stop_requested) and done != self._last_eval_iter:
            self._evaluate(done)
        self._write(done)
        del self._func  # a closure holding the trainer (as detectron2's EvalHook)
