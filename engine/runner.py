"""The run loop: states of training separated by pruning steps, with events and checkpoints.

One ``Run`` owns a run directory (and holds its lock). ``Run.start`` begins a new run,
``Run.resume`` continues one from ``checkpoints/latest.pt``. The loop reads top to bottom like
the algorithm (``docs/algorithm.md``)::

    for each state:       train its epochs (RSST: squeeze toward the pending target)
                          RSST: hard cut; state_ended
                          pruning step on the trained weights → Refill: cut + rewind
                                                                RSST:   new target + rewind

Events that summarise finished work (``engine.schema.DURABLE``) are stored in the checkpoint
first and written to the log after it, and a resume writes those the log lacks: each appears
exactly once, whatever moment the previous process was killed at. Every write of a checkpoint
goes through ``engine.checkpoint.commit``, which refuses weights that are not finite.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, List, Optional

import torch

from engine import checkpoint as ckpt
from engine import data as data_mod
from engine import distributed as ddp
from engine import model as model_mod
from engine import rundir, runevents
from engine.checkpoint import EpochTally, NonFiniteWeights, RunState, StateProgress
from engine.config import dumps, pruning_steps, step_ratios
from engine.device import resolve_device
from engine.epoch import Alone, EpochLoop
from engine.errors import UserError
from engine.logread import truncate_torn_tail
from engine.pidfile import clear_stop_request
from engine.recorder import RunRecorder
from engine.run_checkpoints import RunCheckpoints
from engine.run_outcome import RunOutcome
from engine.run_reports import RunReports
from engine.runlog import RunLog, read_log
from engine.stops import StopControl, StopRequested
from engine.pruning import ACTIVATION_CRITERIA, apply_masks, sparsity_report
from engine.rewind import RewindTarget, parse_rewind
from engine.rsst import RSSTRegularizer, late_ramp_warning, ramp_length
from engine.schema import durable_key
from engine.structure import vit_structure
from engine.system import SystemSampler
from engine.train import (Trainer, amp_dtype, calibration_batches, configure_backends, lr_at,
                          make_optimizer)
from engine.transitions import begin_refill_state, begin_rsst_state, hard_cut, prune_step



class Run(RunOutcome, RunReports, RunCheckpoints):
    """One pruning run in one run directory. The loop is here; how it ends
    (``engine.run_outcome``), what it reports while training (``engine.run_reports``) and its
    checkpoints (``engine.run_checkpoints``) are parts of it kept in their own modules."""

    def __init__(self, cfg: dict, run_dir: Path,
                 listeners: Optional[List[Callable[[dict], None]]] = None,
                 ranks: Optional[ddp.Ranks] = None):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.ranks = ranks if ranks is not None else ddp.from_env()
        self.listeners = listeners or []
        self.recorder = RunRecorder(self.run_dir, self.listeners, writer=self.ranks.main)
        self.stops = StopControl(self.run_dir)
        p = cfg["prune"]
        self.method, self.states = p["method"], p["states"]
        self.epochs = cfg["train"]["epochs"]
        self.head_ratios = step_ratios(cfg, "head_ratio")
        self.mlp_ratios = step_ratios(cfg, "mlp_ratio")
        self.rewind_kind, self.rewind_epoch = parse_rewind(p["rewind"])
        self.rs = RunState()
        self.rewind: Optional[RewindTarget] = None
        self.trainer: Optional[Trainer] = None
        self.epoch_loop: Optional[EpochLoop] = None
        self.warned: set = set()
        self.last_state_ended: Optional[dict] = None  # for run_ended
        self.exit_note = ""  # one line for the terminal when the run ends badly
        self.system: Optional[SystemSampler] = None
        self.t_start = time.time()

    # ------------------------------------------------------------------ entry points
    def start(self) -> int:
        """Begin a new run in ``run_dir``. Returns the process exit code."""
        return self._run(self._begin)

    def resume(self) -> int:
        """Continue from ``checkpoints/latest.pt`` (or from the start when the previous
        process died before its first checkpoint)."""
        return self._run(self._continue)

    def _begin(self) -> None:
        try:
            self._setup()
        except (UserError, StopRequested):
            if self.run_dir.is_dir():  # `watch` made the directory: say why in its log
                self.recorder.open(seq=0)
            raise
        self.recorder.open(seq=0)
        self.recorder.write_text(rundir.CONFIG_FILE, dumps(self.cfg))
        self._emit_run_started()
        init = RewindTarget.capture(self.model)
        self._save_weights("init", init.state, rundir.INIT, epoch=0)
        if self.rewind_kind == "init":
            self.rewind = init
        self.emit(**runevents.state_started(0, self.method, self.epochs, self.model, None,
                                            None))

    def _continue(self) -> None:
        events = self.run_dir / rundir.EVENTS_FILE
        scan = RunLog(events)
        if self.ranks.main:
            self.recorder.take_lock()  # before reading anything of the run
            if events.exists():
                truncate_torn_tail(events)
                scan = read_log(events)
        if ddp.broadcast_object(scan.last_status, self.ranks) == "completed":
            raise UserError(f"run {self.run_dir} already completed; nothing to resume")
        self._setup()
        self.recorder.open(seq=scan.next_seq)
        if self.ranks.main:
            clear_stop_request(self.run_dir)  # asked for while no engine ran: not for this one
        latest = rundir.checkpoint_path(self.run_dir, rundir.LATEST)
        have_init, have_latest = ddp.broadcast_object(
            (rundir.checkpoint_path(self.run_dir, rundir.INIT).is_file(), latest.is_file()),
            self.ranks)  # what rank 0 sees, before it writes anything
        if not have_init or not have_latest:
            # the model as _setup built it (seeded init or pretrained) is the start weights
            init = RewindTarget.capture(self.model)
            if not have_init:
                self._save_weights("init", init.state, rundir.INIT, epoch=0)
            self.rewind = init if self.rewind_kind == "init" else None
        source = None
        if have_latest:
            self._restore(ckpt.load_checkpoint(latest))
            for ev in self.rs.pending_events:
                if durable_key(ev) not in scan.durable:
                    scan.add(self.emit(**ev))
            source = rundir.relative(rundir.LATEST)
        if "run_started" not in scan.kinds:
            self._emit_run_started()
        self.last_state_ended = scan.last_state_ended
        self.emit("resumed", from_state=self.rs.state, from_epoch=self.rs.epoch,
                  from_batch=self.rs.batch, pid=os.getpid(), device=str(self.device),
                  checkpoint=source)
        if source is None and "state_started" not in scan.kinds:
            self.emit(**runevents.state_started(0, self.method, self.epochs, self.model, None,
                                                None))

    # ------------------------------------------------------------------ set-up
    def _setup(self) -> None:
        """Device, model and data; nothing is written."""
        cfg = self.cfg
        self.device = resolve_device(ddp.device_for(self.ranks, cfg["run"]["device"]))
        self.backend = ddp.start(self.ranks, self.device, cfg["run"]["dist_timeout"])
        configure_backends(self.device, cfg["train"])  # TF32 on CUDA (issue 11)
        ddp.check_batch(cfg["data"]["batch_size"], self.ranks.world)
        torch.manual_seed(cfg["run"]["seed"])
        self.model, self.spec, self.weights_source = model_mod.build(
            cfg, data_mod.num_classes(cfg))
        self.model.to(self.device)
        mean, std = model_mod.normalization(self.model)
        self.data = data_mod.load(cfg, self.device, model_mod.input_size(self.model), mean, std)
        self.struct = vit_structure(self.model)
        self.amp, warning = amp_dtype(cfg["train"]["amp"], self.device)
        if warning:
            self.warned.add(warning)
        self.train_source = ddp.shard_train(self.data.train, self.ranks)
        self.eval_sources = {name: ddp.shard_eval(src, self.ranks) for name, src in
                             (("val", self.data.val), ("test", self.data.test)) if src}
        self.nb = len(self.train_source)
        self.hosts = ddp.all_gather_object(ddp.host(), self.ranks)
        self.system = SystemSampler(cfg["run"]["system_seconds"], device=self.device,
                                    rank=self.ranks.rank)
        self.agreement = (ddp.RankAgreement(self.ranks, self.device) if self.ranks.distributed
                          else Alone)
        self.stops.setup = False

    def emit(self, event: str, **fields) -> dict:
        note = self.stops.take_note()
        if note is not None:
            self.recorder.emit("warning", message=note)
        return self.recorder.emit(event, **fields)

    @property
    def stop_requested(self) -> bool:
        return self.stops.requested

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        for message in sorted(self.warned):
            self.emit("warning", message=message)
        while self.rs.state < self.states:
            self._prepare_state()
            while self.rs.epoch < self.epochs:
                self._train_epoch()
            self._end_of_state()

    def _prepare_state(self) -> None:
        """Optimizer, (RSST) regulariser and epoch loop for the state at ``rs.state``."""
        rs, t = self.rs, self.cfg["train"]
        optimizer = make_optimizer(self.model, t)
        if rs.optimizer is not None:
            optimizer.load_state_dict(rs.optimizer)
            rs.optimizer = None
        reg = None
        if self.method == "rsst" and rs.target is not None:
            r = self.cfg["rsst"]
            params = dict(schedule=r["schedule"], reg_granularity=r["reg_granularity"],
                          exponents=r["exponents"], reg_ceiling=r["reg_ceiling"])
            ramp = ramp_length(r["ramp"], self.nb, self.epochs)
            reg = RSSTRegularizer(self.model, rs.target, ramp_steps=ramp, **params)
            if rs.rsst is not None:
                reg.load_state_dict(rs.rsst)
                rs.rsst = None
            elif rs.epoch == 0 and rs.batch == 0:  # the state begins: is its ramp too late?
                lrs = [lr_at(t, i, self.nb) for i in range(self.nb * self.epochs)]
                late = late_ramp_warning(lrs, ramp, steps_per_epoch=self.nb, **params)
                if late:
                    self.emit("warning", message=late, state=rs.state)
        self.trainer = Trainer(ddp.wrap(self.model, self.ranks, self.device), optimizer, t,
                               self.device, self.amp, reg)
        self.epoch_loop = EpochLoop(self.trainer, self.train_source, t, self,
                                    checkpoint_seconds=self.cfg["run"]["checkpoint_minutes"]
                                    * 60, ranks=self.agreement)
        ddp.write_digest(self.ranks, rs.state, self.model, rs.target)

    def _train_epoch(self) -> None:
        rs, t = self.rs, self.cfg["train"]
        s, e = rs.state, rs.epoch
        if rs.batch == 0:
            rs.tally = EpochTally()
            self.emit("epoch_started", state=s, epoch=e, batches=self.nb,
                      lr=lr_at(t, e * self.nb, self.nb))
            if self.trainer.reg is not None and self.cfg["rsst"]["ramp"] == "epoch":
                self.trainer.reg.restart_ramp()
        self.model.train()
        self.recorder.busy(s, "training")
        tally = self.epoch_loop.run(s, e, rs.batch, data_mod.mix_seed(self.cfg["run"]["seed"],
                                                                       s, e), base=rs.tally)
        self._finish_epoch(tally)

    def _global_tally(self, tally: EpochTally) -> EpochTally:
        """The epoch's sums over all ranks (each rank trained its slice of every batch)."""
        if not self.ranks.distributed:
            return tally
        loss_sum, correct, seen = ddp.all_sum([tally.loss_sum, tally.correct, tally.seen],
                                              self.ranks, self.device)
        return EpochTally(loss_sum, int(correct), int(seen), tally.seconds)

    def _evaluate(self, splits=("val", "test")):
        """(loss, acc) of each of ``splits`` for the model now, flat: (val loss, val acc,
        test loss, test acc) by default; in a distributed run every rank evaluates its share
        and the sums are all-reduced."""
        out = []
        for name in splits:
            source = self.eval_sources.get(name)
            if source is None:
                out += [None, None]
                continue
            loss, acc = self.trainer.evaluate(source)  # compiled with training
            n = source.num_samples
            sums = [loss * n, acc * n, n] if n else [0.0, 0.0, 0]
            loss_sum, acc_sum, total = ddp.all_sum(sums, self.ranks, self.device)
            out += [loss_sum / total, acc_sum / total]
        return tuple(out)

    def _finish_epoch(self, tally: EpochTally) -> None:
        rs, s, e = self.rs, self.rs.state, self.rs.epoch
        self.report_system(s, e, self.epoch_loop.take_pace())
        tally = self._global_tally(tally)
        self.recorder.busy(s, "evaluating")
        bad = ckpt.nonfinite(self.model.state_dict())
        if bad:
            raise NonFiniteWeights(
                f"weights became non-finite (NaN/inf) at the end of state {s}, epoch {e} "
                f"({bad[0]} first); the last good checkpoint is kept. Lower train.lr, or check "
                f"rsst.reg_ceiling / the data")
        val_loss, val_acc, test_loss, test_acc = self._evaluate()
        prog = rs.progress
        best = val_acc > prog.best_val_acc
        if best:
            prog.best_val_acc, prog.best_epoch, prog.best_test_acc = val_acc, e, test_acc
        prog.last_val_acc = val_acc
        prog.seconds += tally.seconds
        reg = self.trainer.reg
        ended = dict(event="epoch_ended", state=s, epoch=e,
                     train_loss=tally.loss_sum / max(tally.seen, 1),
                     train_acc=100.0 * tally.correct / max(tally.seen, 1), val_loss=val_loss,
                     val_acc=val_acc, test_loss=test_loss, test_acc=test_acc,
                     seconds=tally.seconds, images_per_s=tally.seen / max(tally.seconds, 1e-9),
                     lr=lr_at(self.cfg["train"], (e + 1) * self.nb - 1, self.nb),
                     **{"lambda": reg.value if reg is not None else None}, best=best)
        if best and rs.target is None:  # RSST with a pending cut: best is saved post-cut
            self._save_best(val_acc)
        if s == 0 and self.rewind_kind == "epoch" and e + 1 == self.rewind_epoch:
            self.rewind = RewindTarget.capture(self.model)
            self._save_weights("rewind", self.rewind.state, rundir.REWIND, epoch=e + 1)
        rs.epoch, rs.batch, rs.tally = e + 1, 0, EpochTally()
        path = self._commit_latest("latest", pending=[ended])
        self.emit(**ended)
        self.emit("checkpoint", state=s, epoch=e, batch=None, kind="latest", path=path)
        if self._agreed_stop() and rs.epoch < self.epochs:
            raise StopRequested

    def _end_of_state(self) -> None:
        """Hard cut (RSST), state summary, pruning step and the move to the next state."""
        rs, s = self.rs, self.rs.state
        pending = []
        if self.trainer.reg is not None:  # the final λ of the state is always in the log
            self.report_lambda(self.trainer.optimizer.param_groups[0]["lr"])
        final_val = rs.progress.last_val_acc
        if self.method == "rsst" and rs.target is not None:
            residual = hard_cut(self.model, rs.target)
            _, after, _, test_acc = self._evaluate()
            pending.append(runevents.hard_cut(s, self.model, final_val, after, residual))
            rs.target, self.trainer.reg = None, None
            final_val = after
            rs.progress.best_test_acc = test_acc
            self._save_best(after)
        prog = rs.progress
        pending.append(dict(event="state_ended", state=s, best_val_acc=prog.best_val_acc,
                            best_epoch=prog.best_epoch, final_val_acc=final_val,
                            test_acc=prog.best_test_acc,
                            sparsity=round(sparsity_report(self.model).sparsity, 4),
                            seconds=prog.seconds))
        if s < pruning_steps(self.cfg):
            self.recorder.busy(s, "pruning")
            pending.append(self._pruning_step(s))
        rs.state, rs.epoch, rs.batch, rs.progress = s + 1, 0, 0, StateProgress()
        if rs.state < self.states:
            pending.append(runevents.state_started(rs.state, self.method, self.epochs,
                                                   self.model, rs.target,
                                                   self.cfg["prune"]["rewind"]))
        path = self._commit_latest("latest", pending=pending)
        for ev in pending:
            self.emit(**ev)
        self.last_state_ended = next(e for e in pending if e["event"] == "state_ended")
        self.emit("checkpoint", state=s, epoch=self.epochs - 1, batch=None, kind="latest",
                  path=path)
        if self._agreed_stop() and rs.state < self.states:
            raise StopRequested

    def _pruning_step(self, s: int) -> dict:
        """Score the trained weights, then cut (Refill, or the last state) or set the RSST
        target; rewind. Returns the ``pruned`` event."""
        p = self.cfg["prune"]
        last = s == self.states - 1  # prune_last: no training follows, cut now
        event, m_s = {"event": "pruned", "state": s}, None
        if self.ranks.main:  # scored once, on rank 0; every rank gets its masks
            calib = (calibration_batches(self.data.calib, p["calib_batches"])
                     if p["criterion"] in ACTIVATION_CRITERIA else None)
            result = prune_step(self.model, rate=p["rate"], head_ratio=self.head_ratios[s],
                                mlp_ratio=self.mlp_ratios[s], sorting=p["sorting"],
                                criterion=p["criterion"], calib=calib,
                                round_to=p["round_to"])
            event = runevents.pruned(s, self.method, p, self.head_ratios[s],
                                     self.mlp_ratios[s], result,
                                     applied=self.method == "refill" or last)
            m_s = result.m_s
        m_s = ddp.broadcast_masks(m_s, self.struct.names, self.ranks, self.device)
        rewind = self.rewind if self.rewind_kind != "none" else None
        if last:
            apply_masks(self.model, m_s)
            self._save_best(self._evaluate(("val",))[1])  # val alone decides the best
        elif self.method == "refill":
            begin_refill_state(self.model, m_s, rewind)
        else:
            self.rs.target = begin_rsst_state(self.model, m_s, rewind)
        return event
