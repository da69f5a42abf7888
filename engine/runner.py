"""The run loop: states of training separated by pruning steps, with events and checkpoints.

One ``Run`` owns a run directory. ``Run.start`` begins a new run, ``Run.resume`` continues one
from ``checkpoints/latest.pt``. The loop (``_loop``) reads top to bottom like the algorithm:

    for each state:       train its epochs (RSST: squeeze toward the pending target)
                          RSST: hard cut; state_ended
                          pruning step on the trained weights → Refill: cut + rewind
                                                                RSST:   new target + rewind

Events that summarise finished work (``epoch_ended``, ``hard_cut``, ``state_ended``,
``pruned``, ``state_started``) are stored in the checkpoint first and written to the log after
it, and a resume writes those the log lacks: each appears exactly once, whatever moment the
previous process was killed at.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from torch import nn

from engine import __version__
from engine import checkpoint as ckpt_io
from engine import rundir
from engine import data as data_mod
from engine import model as model_mod
from engine.config import dumps, pruning_steps, step_ratios
from engine.errors import UserError
from engine.events import EVENTS_FILE, EventLog, Throttle, iter_events, truncate_torn_tail
from engine.pidfile import remove_pidfile, write_pidfile
from engine.pruning import apply_masks, current_masks, sparsity_report
from engine.rewind import RewindTarget, parse_rewind
from engine.rsst import RSSTRegularizer, squeeze_counts
from engine.structure import describe
from engine.train import (accumulator_dtype, amp_dtype, autocast, calibration_batches,
                          evaluate, lr_at, make_optimizer)
from engine.transitions import begin_refill_state, hard_cut, prune_step

EXIT_COMPLETED, EXIT_FAILED, EXIT_STOPPED = 0, 1, 3
DURABLE = {"epoch_ended": ("state", "epoch"), "hard_cut": ("state",),
           "state_ended": ("state",), "pruned": ("state",), "state_started": ("state",)}


class StopRequested(Exception):
    """SIGINT/SIGTERM arrived; the loop checkpointed and unwinds."""


class NonFiniteLoss(Exception):
    """The training loss became NaN/inf."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"run.device = {name!r} but CUDA is not available here (torch "
                        f"{torch.__version__}); use device = 'cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"run.device = {name!r} but only {torch.cuda.device_count()} CUDA "
                        f"device(s) are visible (CUDA_VISIBLE_DEVICES="
                        f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")
    return dev


@dataclass
class StateInfo:
    """Book-keeping of the state in progress (saved in checkpoints)."""

    best_val_acc: float = -1.0
    best_epoch: int = -1
    best_test_acc: Optional[float] = None
    last_val_acc: Optional[float] = None
    seconds: float = 0.0


@dataclass
class Partial:
    """Metrics of a partly trained epoch (a mid-epoch checkpoint)."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0


class Run:
    """One pruning run in one run directory."""

    def __init__(self, cfg: dict, run_dir: Path,
                 listeners: Optional[List[Callable[[dict], None]]] = None):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.listeners = listeners or []
        self.ckpt_dir = self.run_dir / rundir.CHECKPOINT_DIR
        self.log: Optional[EventLog] = None
        self.stop_requested = False
        self.t_start = time.time()
        p = cfg["prune"]
        self.method, self.states = p["method"], p["states"]
        self.epochs = cfg["train"]["epochs"]
        self.head_ratios, self.mlp_ratios = step_ratios(cfg, "head_ratio"), step_ratios(
            cfg, "mlp_ratio")
        # position: the next thing to do
        self.state, self.epoch, self.batch = 0, 0, 0
        self.info = StateInfo()
        self.partial = Partial()
        self.target: Optional[Dict[str, torch.Tensor]] = None  # RSST: pending hard cut
        self.reg: Optional[RSSTRegularizer] = None
        self.reg_state: Optional[dict] = None
        self.optimizer_state: Optional[dict] = None
        self.rewind: Optional[RewindTarget] = None
        self.warned: set = set()
        self.last_state_ended: Optional[dict] = None  # for run_ended

    # ------------------------------------------------------------------ set-up
    def _setup(self) -> None:
        """Device, model and data (before anything is written when possible)."""
        cfg = self.cfg
        self.device = resolve_device(cfg["run"]["device"])
        torch.manual_seed(cfg["run"]["seed"])
        self.model, self.spec, self.weights_source = model_mod.build(
            cfg, data_mod.num_classes(cfg))
        self.model.to(self.device)
        mean, std = model_mod.normalization(self.model)
        self.data = data_mod.load(cfg, self.device, model_mod.input_size(self.model), mean, std)
        self.struct = describe(self.model)
        self.amp, warning = amp_dtype(cfg["train"]["amp"], self.device)
        if warning:
            self.warned.add(warning)
        self.scaler = (torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None)
        self.nb = len(self.data.train)
        self.rewind_kind, self.rewind_epoch = parse_rewind(cfg["prune"]["rewind"])

    def _open_log(self, seq: int = 0) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = EventLog(self.run_dir / EVENTS_FILE, seq=seq, listeners=self.listeners)
        write_pidfile(self.run_dir)

    def emit(self, event: str, **fields) -> dict:
        return self.log.emit(event, **fields)

    # ------------------------------------------------------------------ entry points
    def start(self) -> int:
        """Begin a new run in ``run_dir``. Returns the process exit code."""
        try:
            self._setup()
        except UserError as exc:
            if self.run_dir.exists():  # `watch` made the directory: say why in the log
                self._open_log()
                self.emit("error", message=str(exc), traceback="")
                self.emit("run_ended", status="failed", message=str(exc),
                          seconds=time.time() - self.t_start)
            raise
        self._open_log()
        (self.run_dir / "config.toml").write_text(dumps(self.cfg))
        self._emit_run_started()
        init = RewindTarget.capture(self.model)
        ckpt_io.save_atomic({"format": ckpt_io.FORMAT, "kind": "init", "model": init.state,
                             "masks": None, "model_spec": self.spec, "state": 0, "epoch": 0,
                             "val_acc": None}, self.ckpt_dir / rundir.INIT)
        if self.rewind_kind == "init":
            self.rewind = init
        self._emit_state_started(rewound_to=None)
        return self._guarded_loop()

    def resume(self) -> int:
        """Continue from ``checkpoints/latest.pt`` (or from the start when the previous
        process died before its first checkpoint)."""
        events_path = self.run_dir / EVENTS_FILE
        truncate_torn_tail(events_path)
        log = LogSummary.read(events_path)
        if log.last_status == "completed":
            raise UserError(f"run {self.run_dir} already completed; nothing to resume")
        self._setup()
        latest = self.ckpt_dir / rundir.LATEST
        self._open_log(seq=log.next_seq)
        if latest.is_file():
            ck = ckpt_io.load_checkpoint(latest)
            self._restore(ck)
            for ev in ck.get("pending_events", []):
                if _durable_key(ev) not in log.durable:
                    log.note(self.emit(ev["event"],
                                       **{k: v for k, v in ev.items() if k != "event"}))
            source = str(latest.relative_to(self.run_dir))
        else:
            self.rewind = (RewindTarget.capture(self.model) if self.rewind_kind == "init"
                           else None)
            source = None
        if "run_started" not in log.kinds:
            self._emit_run_started()
        self.last_state_ended = log.last_state_ended
        self.emit("resumed", from_state=self.state, from_epoch=self.epoch,
                  from_batch=self.batch, pid=os.getpid(), device=str(self.device),
                  checkpoint=source)
        if not latest.is_file() and "state_started" not in log.kinds:
            self._emit_state_started(rewound_to=None)
        return self._guarded_loop()

    # ------------------------------------------------------------------ the loop
    def _guarded_loop(self) -> int:
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._loop()
            self._end("completed", "")
            return EXIT_COMPLETED
        except StopRequested:
            self._end("stopped", "stopped by request; resume with `tuiprune run --resume "
                      f"{self.run_dir}`")
            return EXIT_STOPPED
        except KeyboardInterrupt:
            self._end("stopped", "aborted by a second interrupt; resume continues from the "
                      f"last checkpoint: `tuiprune run --resume {self.run_dir}`")
            return EXIT_STOPPED
        except NonFiniteLoss as exc:
            self.emit("error", message=str(exc), traceback="", state=self.state,
                      epoch=self.epoch, batch=self.batch)
            self._end("failed", str(exc))
            return EXIT_FAILED
        except UserError as exc:
            self.emit("error", message=str(exc), traceback="")
            self._end("failed", str(exc))
            raise
        except Exception as exc:  # a bug or an environment failure: keep the traceback
            self.emit("error", message=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc(), state=self.state, epoch=self.epoch,
                      batch=self.batch)
            self._end("failed", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if self.log:
                self.log.close()
            remove_pidfile(self.run_dir)

    def _on_signal(self, signum, _frame) -> None:
        if self.stop_requested:  # second signal: stop now
            raise KeyboardInterrupt
        self.stop_requested = True
        if self.log:
            self.emit("warning", message=f"{signal.Signals(signum).name} received: finishing "
                      f"the current batch, then checkpointing and stopping")

    def _loop(self) -> None:
        for message in sorted(self.warned):
            self.emit("warning", message=message)
        while self.state < self.states:
            self._prepare_state()
            while self.epoch < self.epochs:
                self._train_epoch()
            self._end_of_state()

    def _prepare_state(self) -> None:
        """Optimizer and (RSST) regulariser for the state at ``self.state``."""
        self.optimizer = make_optimizer(self.model, self.cfg["train"])
        if self.optimizer_state is not None:
            self.optimizer.load_state_dict(self.optimizer_state)
            self.optimizer_state = None
        self.reg = None
        if self.method == "rsst" and self.target is not None:
            r = self.cfg["rsst"]
            ramp = self.nb if r["ramp"] == "epoch" else self.nb * self.epochs
            self.reg = RSSTRegularizer(self.model, self.target, schedule=r["schedule"],
                                       reg_granularity=r["reg_granularity"],
                                       exponents=r["exponents"], ramp_steps=ramp,
                                       reg_ceiling=r["reg_ceiling"])
            if self.reg_state is not None:
                self.reg.load_state_dict(self.reg_state)
                self.reg_state = None

    def _train_epoch(self) -> None:
        s, e, start = self.state, self.epoch, self.batch
        model, opt, reg, dev = self.model, self.optimizer, self.reg, self.device
        t = self.cfg["train"]
        if start == 0:
            self.partial = Partial()
            self.emit("epoch_started", state=s, epoch=e, batches=self.nb,
                      lr=lr_at(t, e * self.nb, self.nb))
            if reg is not None and self.cfg["rsst"]["ramp"] == "epoch":
                reg.restart_ramp()
        model.train()
        seed = data_mod.mix_seed(self.cfg["run"]["seed"], s, e)
        throttle = Throttle(0.1)
        loss_sum = torch.zeros((), device=dev, dtype=accumulator_dtype(dev))
        correct = torch.zeros((), device=dev, dtype=torch.long)
        first_bad = torch.full((), -1, device=dev, dtype=torch.long)
        seen_before, seen = self.partial.seen, 0
        t0 = time.perf_counter()
        last_ckpt = time.monotonic()
        every = self.cfg["run"]["checkpoint_minutes"] * 60
        for b, (x, y) in enumerate(self.data.train.batches(seed, start), start=start):
            lr = lr_at(t, e * self.nb + b, self.nb)
            for g in opt.param_groups:
                g["lr"] = lr
            with autocast(dev, self.amp):
                logits = model(x)
                loss = nn.functional.cross_entropy(logits, y,
                                                   label_smoothing=t["label_smoothing"])
            opt.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(opt)
            else:
                loss.backward()
            if reg is not None:
                reg.step()
            if t["grad_clip"] > 0:
                nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"])
            if self.scaler is not None:
                self.scaler.step(opt)
                self.scaler.update()
            else:
                opt.step()
            hits = (logits.argmax(1) == y).sum()
            loss_d = loss.detach()
            loss_sum += loss_d * len(y)
            correct += hits
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss_d),
                                    torch.full_like(first_bad, b), first_bad)
            seen += len(y)
            self.batch = b + 1
            last = b == self.nb - 1
            if throttle.ready() or last:
                bad = int(first_bad)
                if bad >= 0:
                    raise NonFiniteLoss(f"loss became {float(loss_sum):.3g} (non-finite) in "
                                        f"state {s}, epoch {e}, batch {bad}; the last "
                                        f"checkpoint is kept. Lower train.lr, or check "
                                        f"rsst.reg_ceiling / the data")
                elapsed = self.partial.seconds + time.perf_counter() - t0
                self.emit("batch", state=s, epoch=e, batch=b, batches=self.nb,
                          loss=float(loss_d), acc=100.0 * int(hits) / len(y), lr=lr,
                          images_per_s=(seen_before + seen) / max(elapsed, 1e-9))
                if reg is not None:
                    self._emit_lambda(lr)
            if self.stop_requested and not last:
                self._save_partial(loss_sum, correct, seen, t0)
                raise StopRequested
            if every > 0 and time.monotonic() - last_ckpt > every and not last:
                self._save_partial(loss_sum, correct, seen, t0)
                last_ckpt = time.monotonic()
        self._finish_epoch(loss_sum, correct, seen, t0)

    def _emit_lambda(self, lr: float) -> None:
        reg = self.reg
        self.emit("lambda", state=self.state, step=reg.steps_taken, steps=reg.ramp_steps,
                  value=reg.value, regularized=reg.regularized, heads=reg.heads,
                  neurons=reg.neurons)
        t = self.cfg["train"]
        msg = reg.stability_warning(lr, t["momentum"] if t["optimizer"] == "sgd" else 0.0)
        if msg and ("lambda", self.state) not in self.warned:
            self.warned.add(("lambda", self.state))
            self.emit("warning", message=msg, state=self.state, epoch=self.epoch)

    def _accumulate(self, loss_sum, correct, seen, t0) -> Partial:
        p = self.partial
        return Partial(loss_sum=p.loss_sum + float(loss_sum), correct=p.correct + int(correct),
                       seen=p.seen + seen, seconds=p.seconds + time.perf_counter() - t0)

    def _save_partial(self, loss_sum, correct, seen, t0) -> None:
        """Mid-epoch checkpoint: resume continues at ``self.batch`` of this epoch."""
        self.partial = self._accumulate(loss_sum, correct, seen, t0)
        if not math.isfinite(self.partial.loss_sum):
            return  # never overwrite a good checkpoint with diverged weights
        path = self._save_latest(kind="stop" if self.stop_requested else "latest")
        self.emit("checkpoint", state=self.state, epoch=self.epoch, batch=self.batch,
                  kind="stop" if self.stop_requested else "latest", path=path)

    def _finish_epoch(self, loss_sum, correct, seen, t0) -> None:
        s, e = self.state, self.epoch
        p = self._accumulate(loss_sum, correct, seen, t0)
        val_loss, val_acc = evaluate(self.model, self.data.val, self.device, self.amp)
        test_loss = test_acc = None
        if self.data.test is not None:
            test_loss, test_acc = evaluate(self.model, self.data.test, self.device, self.amp)
        best = val_acc > self.info.best_val_acc
        if best:
            self.info.best_val_acc, self.info.best_epoch = val_acc, e
            self.info.best_test_acc = test_acc
        self.info.last_val_acc = val_acc
        self.info.seconds += p.seconds
        ended = dict(event="epoch_ended", state=s, epoch=e,
                     train_loss=p.loss_sum / max(p.seen, 1),
                     train_acc=100.0 * p.correct / max(p.seen, 1), val_loss=val_loss,
                     val_acc=val_acc, test_loss=test_loss, test_acc=test_acc,
                     seconds=p.seconds, images_per_s=p.seen / max(p.seconds, 1e-9),
                     lr=lr_at(self.cfg["train"], (e + 1) * self.nb - 1, self.nb),
                     **{"lambda": self.reg.value if self.reg is not None else None},
                     best=best)
        if best and self.target is None:  # RSST with a pending cut: best is saved post-cut
            self._save_best(val_acc)
        if s == 0 and self.rewind_kind == "epoch" and e + 1 == self.rewind_epoch:
            self.rewind = RewindTarget.capture(self.model)
            self._save_rewind()
        self.epoch, self.batch, self.partial = e + 1, 0, Partial()
        path = self._save_latest(pending=[ended])
        self.emit(**ended)
        self.emit("checkpoint", state=s, epoch=e, batch=None, kind="latest", path=path)
        if self.stop_requested and self.epoch < self.epochs:
            raise StopRequested

    def _end_of_state(self) -> None:
        """Hard cut (RSST), state summary, pruning step and the move to the next state."""
        s, p = self.state, self.cfg["prune"]
        pending = []
        if self.reg is not None:  # the final λ of the state is always in the log
            self._emit_lambda(self.optimizer.param_groups[0]["lr"])
        final_val = self.info.last_val_acc
        if self.method == "rsst" and self.target is not None:
            before = final_val
            residual = hard_cut(self.model, self.target)
            _, after = evaluate(self.model, self.data.val, self.device, self.amp)
            test_acc = (evaluate(self.model, self.data.test, self.device, self.amp)[1]
                        if self.data.test is not None else None)
            rep = sparsity_report(self.model)
            pending.append(dict(event="hard_cut", state=s, **rep.to_dict(),
                                val_acc_before=before, val_acc_after=after,
                                residual_norm=residual))
            self.target, self.reg = None, None
            final_val = after
            self.info.best_test_acc = test_acc
            self._save_best(after)
        pending.append(dict(event="state_ended", state=s, best_val_acc=self.info.best_val_acc,
                            best_epoch=self.info.best_epoch, final_val_acc=final_val,
                            test_acc=self.info.best_test_acc,
                            sparsity=round(sparsity_report(self.model).sparsity, 4),
                            seconds=self.info.seconds))
        if s < pruning_steps(self.cfg):
            calib = (calibration_batches(self.data.calib, p["calib_batches"])
                     if p["criterion"] in ("l1", "l2", "saliency") else None)
            result = prune_step(self.model, rate=p["rate"], head_ratio=self.head_ratios[s],
                                mlp_ratio=self.mlp_ratios[s], sorting=p["sorting"],
                                criterion=p["criterion"], calib=calib)
            last = s == self.states - 1  # prune_last: no training follows, cut now
            pending.append(dict(event="pruned", state=s, step=s, method=self.method,
                                sorting=p["sorting"], criterion=p["criterion"],
                                applied=self.method == "refill" or last, rate=p["rate"],
                                head_ratio=self.head_ratios[s], mlp_ratio=self.mlp_ratios[s],
                                elementwise_sparsity=round(result.elementwise_sparsity, 4),
                                **result.report.to_dict(), seconds=result.seconds))
            rewind = self.rewind if self.rewind_kind != "none" else None
            if last:
                apply_masks(self.model, result.m_s)
                self._save_best(evaluate(self.model, self.data.val, self.device, self.amp)[1])
            elif self.method == "refill":
                begin_refill_state(self.model, result.m_s, rewind)
            else:
                if rewind is not None:
                    rewind.restore(self.model)
                self.target = result.m_s
        self.state, self.epoch, self.batch = s + 1, 0, 0
        self.info = StateInfo()
        if self.state < self.states:
            pending.append(self._state_started_event(rewound_to=p["rewind"]))
        path = self._save_latest(pending=pending)
        for ev in pending:
            self.emit(**ev)
        self.last_state_ended = next(e for e in pending if e["event"] == "state_ended")
        self.emit("checkpoint", state=s, epoch=self.epochs - 1, batch=None, kind="latest",
                  path=path)
        if self.stop_requested and self.state < self.states:
            raise StopRequested

    # ------------------------------------------------------------------ events
    def _emit_run_started(self) -> None:
        cfg, st = self.cfg, self.struct
        import timm

        self.emit("run_started", run_id=self.run_dir.name, name=cfg["run"]["name"],
                  config=cfg,
                  model={"name": self.spec["name"],
                         "params": sum(p.numel() for p in self.model.parameters()),
                         "prunable_weights": st.total_weights, "blocks": len(st),
                         "heads_per_block": [b.num_heads for b in st],
                         "neurons_per_block": [b.hidden for b in st],
                         "weights_source": self.weights_source,
                         "img_size": model_mod.input_size(self.model)},
                  data={"dataset": self.data.name, "train": self.data.train.num_samples,
                        "val": self.data.val.num_samples,
                        "test": self.data.test.num_samples if self.data.test else 0,
                        "num_classes": self.data.num_classes,
                        "img_size": cfg["data"]["resize"] or model_mod.input_size(self.model)},
                  device=str(self.device), pid=os.getpid(), host=socket.gethostname(),
                  states=self.states, epochs=self.epochs, method=self.method,
                  sorting=cfg["prune"]["sorting"], criterion=cfg["prune"]["criterion"],
                  head_ratio=self.head_ratios, mlp_ratio=self.mlp_ratios,
                  batches_per_epoch=self.nb,
                  versions={"tuiprune": __version__, "torch": torch.__version__,
                            "timm": timm.__version__})

    def _state_started_event(self, rewound_to) -> dict:
        squeezing = None
        if self.method == "rsst" and self.target is not None:
            weights, heads, neurons = squeeze_counts(self.model, self.target)
            squeezing = {"regularized": weights, "heads": heads, "neurons": neurons}
        return dict(event="state_started", state=self.state, method=self.method,
                    epochs=self.epochs,
                    sparsity=round(sparsity_report(self.model).sparsity, 4),
                    rewound_to=rewound_to, squeezing=squeezing)

    def _emit_state_started(self, rewound_to) -> None:
        ev = self._state_started_event(rewound_to)
        self.emit(**ev)

    def _end(self, status: str, message: str) -> None:
        """``run_ended``: the results of the state in progress, or of the last finished one."""
        if self.info.best_val_acc >= 0:
            best, final, test = (self.info.best_val_acc, self.info.last_val_acc,
                                 self.info.best_test_acc)
        else:
            last = self.last_state_ended or {}
            best, final, test = (last.get("best_val_acc"), last.get("final_val_acc"),
                                 last.get("test_acc"))
        sparsity = None
        if hasattr(self, "model"):
            sparsity = round(sparsity_report(self.model).sparsity, 4)
        self.emit("run_ended", status=status, best_val_acc=best, final_val_acc=final,
                  test_acc=test, sparsity=sparsity, seconds=time.time() - self.t_start,
                  message=message)
        self.log.close()

    # ------------------------------------------------------------------ checkpoints
    def _common(self, kind: str) -> dict:
        return {"format": ckpt_io.FORMAT, "kind": kind,
                "model": self.model.state_dict(), "masks": current_masks(self.model),
                "model_spec": self.spec, "state": self.state, "epoch": self.epoch}

    def _save_best(self, val_acc: float, state: Optional[int] = None) -> None:
        state = self.state if state is None else state
        ck = self._common("best")
        ck.update(state=state, epoch=self.epoch, val_acc=val_acc)
        ckpt_io.save_atomic(ck, self.ckpt_dir / rundir.best_name(state))
        self.emit("checkpoint", state=state, epoch=self.epoch, batch=None, kind="best",
                  path=f"{rundir.CHECKPOINT_DIR}/{rundir.best_name(state)}")

    def _save_rewind(self) -> None:
        ckpt_io.save_atomic({"format": ckpt_io.FORMAT, "kind": "rewind",
                             "model": self.rewind.state, "masks": None,
                             "model_spec": self.spec, "state": 0, "epoch": self.epoch + 1,
                             "val_acc": None}, self.ckpt_dir / "rewind.pt")

    def _save_latest(self, kind: str = "latest", pending: Optional[list] = None) -> str:
        ck = self._common(kind)
        ck.update(batch=self.batch, val_acc=self.info.last_val_acc,
                  optimizer=self.optimizer.state_dict() if self.epoch or self.batch else None,
                  target=self.target,
                  rsst=self.reg.state_dict() if self.reg is not None else None,
                  info=vars(self.info).copy(), partial=vars(self.partial).copy(),
                  pending_events=pending or [], warned=[w for w in self.warned
                                                       if isinstance(w, str)],
                  rng={"torch": torch.get_rng_state(),
                       "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda"
                       else []})
        ckpt_io.save_atomic(ck, self.ckpt_dir / rundir.LATEST)
        return f"{rundir.CHECKPOINT_DIR}/{rundir.LATEST}"

    def _restore(self, ck: dict) -> None:
        self.model.load_state_dict(ck["model"])
        if ck.get("masks"):
            apply_masks(self.model, {k: v.to(self.device) for k, v in ck["masks"].items()})
        self.state, self.epoch, self.batch = ck["state"], ck["epoch"], ck.get("batch", 0)
        self.target = ({k: v.to(self.device) for k, v in ck["target"].items()}
                       if ck.get("target") else None)
        self.reg_state = ck.get("rsst")
        self.optimizer_state = ck.get("optimizer")
        self.info = StateInfo(**ck["info"])
        self.partial = Partial(**ck["partial"])
        if self.rewind_kind == "init":
            init = ckpt_io.load_checkpoint(self.ckpt_dir / rundir.INIT)
            self.rewind = RewindTarget({k: v.to(self.device) for k, v in init["model"].items()})
        elif self.rewind_kind == "epoch" and (self.ckpt_dir / "rewind.pt").is_file():
            rw = ckpt_io.load_checkpoint(self.ckpt_dir / "rewind.pt")
            self.rewind = RewindTarget({k: v.to(self.device) for k, v in rw["model"].items()})
        torch.set_rng_state(ck["rng"]["torch"])
        if self.device.type == "cuda" and ck["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(ck["rng"]["cuda"])
        self.warned = set(ck.get("warned", []))
        if self.state >= self.states:
            raise UserError(f"run {self.run_dir} finished all {self.states} states; nothing "
                            f"to resume")


@dataclass
class LogSummary:
    """What a resume needs to know of an existing log, gathered in one streaming pass (a long
    run's log has millions of lines; holding them all would cost gigabytes)."""

    next_seq: int = 0
    last_status: Optional[str] = None
    kinds: set = field(default_factory=set)
    durable: set = field(default_factory=set)
    last_state_ended: Optional[dict] = None

    @classmethod
    def read(cls, path: Path) -> "LogSummary":
        summary = cls()
        for ev in iter_events(path):
            summary.note(ev)
        return summary

    def note(self, ev: dict) -> None:
        kind = ev["event"]
        self.next_seq = max(self.next_seq, ev.get("seq", -1) + 1)
        self.kinds.add(kind)
        if kind in DURABLE:
            self.durable.add(_durable_key(ev))
        if kind == "run_ended":
            self.last_status = ev.get("status")
        elif kind == "state_ended":
            self.last_state_ended = ev


def _durable_key(ev: dict) -> tuple:
    return (ev["event"],) + tuple(ev.get(k) for k in DURABLE[ev["event"]])
