"""What a run reports while it trains (the ``engine.epoch.EpochHost`` side of
:class:`engine.runner.Run`): λ, the machine (``system``), the ranks' agreement to stop, and
``run_started``."""

from __future__ import annotations

from engine import distributed as ddp
from engine import runevents


class RunReports:
    """The part of :class:`engine.runner.Run` that reports progress during training."""

    def report_lambda(self, lr: float) -> None:
        reg = self.trainer.reg
        self.emit("lambda", state=self.rs.state, step=reg.steps_taken, steps=reg.ramp_steps,
                  value=reg.value, regularized=reg.regularized, heads=reg.heads,
                  neurons=reg.neurons)
        t = self.cfg["train"]
        msg = reg.stability_warning(lr, t["momentum"] if t["optimizer"] == "sgd" else 0.0)
        if msg and ("lambda", self.rs.state) not in self.warned:
            self.warned.add(("lambda", self.rs.state))
            self.emit("warning", message=msg, state=self.rs.state, epoch=self.rs.epoch)

    def _agreed_stop(self) -> bool:
        """Whether to stop at this boundary: asked on any rank (the same answer on all)."""
        return self.agreement.agree([self.stop_requested])[0]

    def system_due(self) -> bool:
        """Time for a ``system`` sample (rank 0's clock decides for every rank)."""
        return self.ranks.main and self.system.due()

    def report_system(self, state: int, epoch: int, pace) -> None:
        """Count the training since the last report and write a ``system`` event (every rank
        sends its figures to rank 0)."""
        if not self.system.enabled:
            return
        if pace.images:
            self.system.count(pace.images * self.ranks.world, pace.step_seconds,
                              pace.data_wait_seconds)
        samples = ddp.all_gather_object(self.system.process_sample(), self.ranks)
        if self.ranks.main:
            others = samples[1:] if self.ranks.distributed else None
            self.emit("system", **self.system.sample(state, epoch, ranks=others,
                                                     own=samples[0]))

    def _emit_run_started(self) -> None:
        world = self.ranks.world
        distributed = {"world_size": world, "backend": self.backend, "hosts": self.hosts,
                       "per_rank_batch": self.cfg["data"]["batch_size"] // world} \
            if self.ranks.distributed else None
        self.emit(**runevents.run_started(self.cfg, self.run_dir.name, self.model, self.struct,
                                          self.spec, self.weights_source, self.data,
                                          self.device, self.head_ratios, self.mlp_ratios,
                                          self.nb, distributed))
