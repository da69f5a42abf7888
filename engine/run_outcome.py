"""How a run ends: every way out of the run loop becomes its events (``error``,
``run_ended``) and a process exit code, written as far as the filesystem allows."""

from __future__ import annotations

import time
import traceback
from typing import Callable, Dict, Optional

from engine import distributed as ddp
from engine import rundir
from engine.checkpoint import NonFiniteWeights
from engine.epoch import NonFiniteLoss
from engine.errors import EXIT_COMPLETED, EXIT_FAILED, EXIT_STOPPED, UserError, WriteFailed
from engine.pidfile import clear_stop_request
from engine.pruning import sparsity_report
from engine.stops import StopRequested



class RunOutcome:
    """The part of :class:`engine.runner.Run` that runs the loop and reports how it ended."""

    def _run(self, begin: Callable[[], None]) -> int:
        """Run ``begin`` then the loop; turn every way it can end into events and a code."""
        self.stops.install()
        try:
            begin()
            self.stops.poll_files = self.ranks.main
            self._loop()
            return self._finish("completed", "", EXIT_COMPLETED)
        except StopRequested:
            if self.stops.setup:
                self.exit_note = "stopped during set-up, before training began"
            return self._finish("stopped", "stopped by request; resume with `tuiprune run "
                                f"--resume {self.run_dir}`", EXIT_STOPPED)
        except KeyboardInterrupt:
            return self._finish("stopped", "aborted by a second interrupt; resume continues "
                                f"from the last checkpoint: `tuiprune run --resume "
                                f"{self.run_dir}`", EXIT_STOPPED)
        except (NonFiniteLoss, NonFiniteWeights) as exc:
            self._report_error(str(exc), batch=getattr(exc, "batch", None))
            return self._finish("failed", str(exc), EXIT_FAILED)
        except WriteFailed as exc:
            self.exit_note = f"{exc}; the last good checkpoint is {self._last_good()}"
            self._report_error(self.exit_note)
            return self._finish("failed", self.exit_note, EXIT_FAILED)
        except UserError as exc:
            self._report_error(str(exc), where=False)
            self._finish("failed", str(exc), EXIT_FAILED)
            raise
        except Exception as exc:  # a bug or an environment failure: keep the traceback
            self._report_error(f"{type(exc).__name__}: {exc}", tb=traceback.format_exc())
            self._finish("failed", f"{type(exc).__name__}: {exc}", EXIT_FAILED)
            raise
        finally:
            self.stops.restore()
            if self.system is not None:
                self.system.close()
            self.recorder.close()
            ddp.stop(self.ranks)

    def _best_effort(self, write: Callable[[], object]) -> None:
        """Write an ending event if there is room; a failing filesystem must not hide the
        reason the run ended."""
        if not self.recorder.opened:
            return
        try:
            write()
        except (WriteFailed, OSError):
            pass

    def _report_error(self, message: str, tb: str = "", batch: Optional[int] = None,
                      where: bool = True) -> None:
        fields: Dict[str, object] = {"message": message, "traceback": tb}
        if where and not self.stops.setup:
            fields.update(state=self.rs.state, epoch=self.rs.epoch, batch=batch if batch
                          is not None else (self.epoch_loop.next_batch if self.epoch_loop
                                            else self.rs.batch))
        self._best_effort(lambda: self.emit("error", **fields))

    def _finish(self, status: str, message: str, code: int) -> int:
        self._best_effort(lambda: self._end(status, message))
        return code

    def _end(self, status: str, message: str) -> None:
        """``run_ended``: the results of the state in progress, or of the last finished one."""
        prog = self.rs.progress
        if prog.best_val_acc >= 0:
            best, final, test = prog.best_val_acc, prog.last_val_acc, prog.best_test_acc
        else:
            last = self.last_state_ended or {}
            best, final, test = (last.get("best_val_acc"), last.get("final_val_acc"),
                                 last.get("test_acc"))
        sparsity = None
        if not self.stops.setup:
            sparsity = round(sparsity_report(self.model).sparsity, 4)
        self.emit("run_ended", status=status, best_val_acc=best, final_val_acc=final,
                  test_acc=test, sparsity=sparsity, seconds=time.time() - self.t_start,
                  message=message, stopped_by=self.stops.by if status == "stopped" else None)
        if status == "stopped" and self.ranks.main:
            clear_stop_request(self.run_dir)

    def _last_good(self) -> str:
        latest = rundir.checkpoint_path(self.run_dir, rundir.LATEST)
        return str(latest) if latest.is_file() else "none yet (the run restarts from the start)"
