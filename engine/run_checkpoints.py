"""A run's checkpoints: the rewind targets, the best model of each state and ``latest.pt``
(the whole ``RunState``) written through the one commit, and a resume's restore of them."""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from engine import checkpoint as ckpt
from engine import rundir
from engine.checkpoint import EpochTally, RunState
from engine.errors import UserError
from engine.pruning import apply_masks, current_masks
from engine.rewind import RewindTarget


class RunCheckpoints:
    """The part of :class:`engine.runner.Run` that writes and restores checkpoints."""

    def _commit(self, ck: dict, name: str) -> str:
        return self.recorder.commit(ck, name, critical=self.stops.critical)

    def _save_weights(self, kind: str, state_dict: dict, name: str, epoch: int) -> None:
        """A rewind target (``init.pt``, ``rewind.pt``): weights only."""
        self._commit(ckpt.layout(kind, state_dict, None, self.spec, 0, epoch), name)

    def _save_best(self, val_acc: float) -> None:
        rs = self.rs
        name = rundir.best_name(rs.state)
        path = self._commit(ckpt.layout("best", self.model.state_dict(),
                                        current_masks(self.model), self.spec, rs.state,
                                        rs.epoch, val_acc), name)
        self.emit("checkpoint", state=rs.state, epoch=rs.epoch, batch=None, kind="best",
                  path=path)

    def _commit_latest(self, kind: str, pending: Optional[list] = None,
                       batch: Optional[int] = None,
                       tally: Optional[EpochTally] = None) -> str:
        rs = self.rs
        batch = rs.batch if batch is None else batch
        snapshot = dataclasses.replace(
            rs, batch=batch, tally=tally or rs.tally, pending_events=pending or [],
            optimizer=self.trainer.optimizer.state_dict() if rs.epoch or batch else None,
            rsst=self.trainer.reg.state_dict() if self.trainer.reg is not None else None,
            warned=sorted(w for w in self.warned if isinstance(w, str)),
            rng={"torch": torch.get_rng_state(),
                 "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []})
        return self._commit(ckpt.layout(kind, self.model.state_dict(),
                                        current_masks(self.model), self.spec, rs.state,
                                        rs.epoch, rs.progress.last_val_acc, snapshot),
                            rundir.LATEST)

    def _restore(self, ck: dict) -> None:
        self.model.load_state_dict(ck["model"])
        if ck.get("masks"):
            apply_masks(self.model, {k: v.to(self.device) for k, v in ck["masks"].items()})
        self.rs = rs = RunState.from_checkpoint(ck)
        if rs.target:
            rs.target = {k: v.to(self.device) for k, v in rs.target.items()}
        if self.rewind_kind == "init":
            if self.rewind is None:  # else: captured from the fresh model, init.pt was missing
                self.rewind = self._load_rewind(rundir.INIT)
        elif self.rewind_kind == "epoch" and rundir.checkpoint_path(
                self.run_dir, rundir.REWIND).is_file():
            self.rewind = self._load_rewind(rundir.REWIND)
        torch.set_rng_state(rs.rng["torch"])
        if self.device.type == "cuda" and rs.rng["cuda"]:
            torch.cuda.set_rng_state_all(rs.rng["cuda"])
        self.warned = set(rs.warned)
        if rs.state >= self.states:
            raise UserError(f"run {self.run_dir} finished all {self.states} states; nothing "
                            f"to resume")

    def _load_rewind(self, name: str) -> RewindTarget:
        saved = ckpt.load_checkpoint(rundir.checkpoint_path(self.run_dir, name))
        return RewindTarget({k: v.to(self.device) for k, v in saved["model"].items()})

    def save_mid_epoch(self, batch: int, tally: EpochTally) -> None:
        """Mid-epoch checkpoint: a resume continues at ``batch`` with ``tally`` so far."""
        kind = "stop" if self.stop_requested else "latest"
        path = self._commit_latest(kind, batch=batch, tally=tally)
        self.emit("checkpoint", state=self.rs.state, epoch=self.rs.epoch, batch=batch,
                  kind=kind, path=path)
