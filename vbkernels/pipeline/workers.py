"""The local engine's worker processes: one task at a time each, replaced when one dies,
never outliving the process that started them.

Why not ``concurrent.futures.ProcessPoolExecutor``: when one of its workers dies (the
out-of-memory killer, a ``kill``), the executor breaks: every task in flight fails, the next
``submit`` raises ``BrokenProcessPool``, and it cannot say which task was on the dead
worker. And a ``SystemExit`` raised in a task (a SIGTERM handler's ``sys.exit``) is caught
and sent back as the task's error, so the worker goes on and then waits on its queue for
ever after its parent is gone. Here each worker has its own pipe and runs one task at a
time, so a death fails exactly the task it was running (:class:`WorkerDied`), a fresh
worker takes its place, and every other task goes on.

A worker leaves when its parent does, however the parent ends: Linux's
``PR_SET_PDEATHSIG`` sends it SIGKILL at once (a signal Python cannot delay: a worker
stuck in C code holding the GIL still goes), and a watchdog thread (every platform)
notices within :data:`WATCHDOG_S` that its parent process changed. A temporary file it
was writing is then removed by the next run (``vbkernels.files.remove_stale_temporaries``).
SIGTERM (the pool's own ``terminate``, or anyone's ``kill``) removes the temporary file at
once and exits with 143; SIGINT is ignored (Ctrl-C reaches the whole process group: the
main process decides).

Workers are forked (no re-import of torch each), and a forked child holds copies of the
parent's objects but none of its threads. A garbage FFmpeg codec context (a video read
that ended in an error leaves one in a reference cycle) that the child's garbage
collector frees waits for ever on its decoding threads. So the parent collects its
garbage and freezes the rest (``gc.freeze``) just before each fork: the child's collector
never looks at anything it inherited.

A fork from a thread (a replacement worker is started by the pool's thread) has a second
hazard: the child clears the other threads' states, freeing their thread-local objects, and
PyAV keeps a per-thread ``VideoReformatter`` whose FFmpeg slice threads do not exist in
the child, so freeing it there waits for ever. vbkernels converts every video frame with
one-thread reformatters (``sources.frame_rgb``), which are safe to free; for anything else
that leaves such state behind, a worker that has not started within ``_START_TIMEOUT_S`` is
killed and counts as a death, and ``shutdown`` kills a worker that does not leave within
``_EXIT_GRACE_S``, so neither a run nor its end waits for ever.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import gc
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import wait as wait_for

from vbkernels.files import remove_own_temporaries

WATCHDOG_S = 0.2          # how often a worker checks that its parent is alive
_TERMINATE_GRACE_S = 2.0  # SIGTERMed workers that have not exited by then get SIGKILL
# A worker that has not said it is ready by then is stuck in its start (see the module
# docstring, "a fork from a thread") and is killed: it counts as a death before any task.
_START_TIMEOUT_S = 60.0
_EXIT_GRACE_S = 10.0      # shutdown(): workers told to leave that are still there get SIGKILL
_IDLE_DEATHS = 3          # per worker slot: deaths with no task before the pool gives up


class WorkerDied(RuntimeError):
    """The worker process running this task died (killed, out of memory, crashed)."""


class PoolBroken(RuntimeError):
    """Workers keep dying before they run anything (the pool cannot start them)."""


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (the out-of-memory killer sends it)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    if code == 128 + signal.SIGTERM:
        return "stopped by SIGTERM"
    return f"exited with status {code}"


# --------------------------------------------------------------------- in the worker


def _die(*_) -> None:
    """SIGTERM (or a vanished parent): drop any half-written temporary file and leave now,
    whatever the task was doing (a task must never catch its way out of this)."""
    remove_own_temporaries()
    os._exit(143)


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            _die()
        time.sleep(WATCHDOG_S)


def exit_with_parent(parent: int) -> None:
    """SIGKILL this process when ``parent`` dies (Linux ``PR_SET_PDEATHSIG``), plus a
    watchdog thread that ends it within ``WATCHDOG_S`` where that is not available."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it died before prctl took effect
        _die()
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True,
                     name="vbk-parent-watchdog").start()


def _worker_main(conn, parent: int, initializer, initargs) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _die)
    exit_with_parent(parent)
    if initializer is not None:
        initializer(*initargs)
    conn.send(None)  # ready: no task is sent before, so a failed start blames none
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            break
        if item is None:
            break
        fn, args = item
        try:
            reply = (True, fn(*args))
        except Exception as exc:  # noqa: BLE001 - sent back as the task's error
            reply = (False, exc)
        try:
            conn.send(reply)
        except (EOFError, OSError):
            break
        except Exception as exc:  # noqa: BLE001 - a result or error that does not pickle
            conn.send((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
    os._exit(0)  # no atexit handlers of the parent's (a forked copy of them)


# ------------------------------------------------------------------- in the parent


class _Worker:
    def __init__(self, context, parent: int, initializer, initargs):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, daemon=True,
                                       args=(child, parent, initializer, initargs))
        self.process.start()  # inside _frozen_heap (see the module docstring)
        child.close()  # our copy: the worker's end then closes when the worker dies
        self.ready = False              # its initializer ran (it said so)
        self.started = time.monotonic()
        self.task: tuple | None = None  # (future, fn, args) while busy


@contextlib.contextmanager
def _frozen_heap():
    """Collect this process's garbage and freeze the rest for the forks made inside, so a
    child's collector never frees (and never waits on) anything it inherited. One
    collection (~0.15 s with torch loaded) covers every worker started together."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class WorkerPool:
    """``workers`` processes that run ``submit(fn, *args)`` calls one at a time each and
    hand back ``concurrent.futures.Future`` objects. A worker that dies fails only the
    task it was on (:class:`WorkerDied`) and is replaced; ``on_death(pid, task)`` is
    called first (from the pool's thread; ``task`` is ``(fn, args)`` or None)."""

    def __init__(self, workers: int, initializer=None, initargs=(), on_death=None):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        self._context = multiprocessing.get_context(method)
        self._spawn_args = (os.getpid(), initializer, initargs)
        self._on_death = on_death
        self._lock = threading.Lock()
        self._queue: deque = deque()
        self._closing = False
        self._broken: str | None = None
        self._idle_deaths = 0
        self._budget = _IDLE_DEATHS * workers
        self.deaths = 0
        self._wake_r, self._wake_w = self._context.Pipe(duplex=False)
        # Workers start here, before the pool's thread exists (fork with one thread).
        with _frozen_heap():
            self._workers = [_Worker(self._context, *self._spawn_args)
                             for _ in range(workers)]
        self._thread = threading.Thread(target=self._manage, daemon=True, name="vbk-pool")
        self._thread.start()

    # -- the caller's side ----------------------------------------------------------------

    def submit(self, fn, *args) -> cf.Future:
        future: cf.Future = cf.Future()
        with self._lock:
            if self._broken is not None:
                future.set_exception(PoolBroken(self._broken))
                return future
            if self._closing:
                raise RuntimeError("cannot submit to a pool that is shutting down")
            self._queue.append((future, fn, args))
        self._wake()
        return future

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers]

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """No new tasks; with ``cancel_futures`` the queued ones are cancelled; with
        ``wait`` return once every task ran and every worker left."""
        with self._lock:
            self._closing = True
            cancelled = list(self._queue) if cancel_futures else []
            if cancel_futures:
                self._queue.clear()
        for future, _, _ in cancelled:
            future.cancel()
        self._wake()
        if wait:
            self._thread.join()
            for worker in self._workers:  # told to leave: bounded, a stuck one is killed
                worker.process.join(_EXIT_GRACE_S)
                if worker.process.is_alive():
                    worker.process.kill()
                    worker.process.join()

    def terminate(self) -> None:
        """End every worker now (SIGTERM: each removes its temporary file; SIGKILL after
        a grace period); tasks still queued or running fail."""
        self.shutdown(wait=False, cancel_futures=True)
        for worker in list(self._workers):
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in list(self._workers):
            worker.process.join(_TERMINATE_GRACE_S)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        self._thread.join()

    def _wake(self) -> None:
        try:
            self._wake_w.send_bytes(b"!")
        except OSError:  # the pool's thread has finished and closed it
            pass

    # -- the pool's thread ----------------------------------------------------------------

    def _manage(self) -> None:
        try:
            while True:
                self._dispatch()
                busy = [w for w in self._workers if w.task is not None]
                with self._lock:
                    if self._closing and not busy and not self._queue:
                        break
                listening = [w for w in self._workers if w.task is not None or not w.ready]
                starting = any(not w.ready for w in self._workers)
                ready = wait_for([self._wake_r] + [w.conn for w in listening]
                                 + [w.process.sentinel for w in self._workers],
                                 timeout=1.0 if starting else None)
                self._kill_stuck_starts()
                if self._wake_r in ready:
                    while self._wake_r.poll():
                        self._wake_r.recv_bytes()
                for worker in listening:
                    if worker.conn in ready:
                        self._receive(worker)
                for worker in list(self._workers):
                    if worker.process.sentinel in ready or not worker.process.is_alive():
                        self._replace(worker)
        finally:
            for worker in self._workers:
                try:
                    worker.conn.send(None)  # a clean exit for idle workers
                except OSError:
                    pass
            self._wake_r.close()
            self._wake_w.close()

    def _kill_stuck_starts(self) -> None:
        """SIGKILL workers still not ready after ``_START_TIMEOUT_S``; their sentinels then
        fire and ``_replace`` counts each as a death before any task (so a start that
        always hangs ends in ``PoolBroken``, never in a run that waits for ever)."""
        now = time.monotonic()
        for worker in self._workers:
            if (not worker.ready and now - worker.started > _START_TIMEOUT_S
                    and worker.process.is_alive()):
                worker.process.kill()

    def _dispatch(self) -> None:
        for worker in self._workers:
            if worker.task is not None or not worker.ready or not worker.process.is_alive():
                continue
            with self._lock:
                if not self._queue:
                    return
                future, fn, args = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            worker.task = (future, fn, args)
            try:
                worker.conn.send((fn, args))
            except (OSError, EOFError):
                pass  # it died; its sentinel says so next
            except Exception as exc:  # noqa: BLE001 - arguments that do not pickle
                worker.task = None
                future.set_exception(exc)

    def _receive(self, worker: _Worker) -> None:
        if not worker.ready:
            try:
                worker.conn.recv()
                worker.ready = True
            except (EOFError, OSError):
                pass  # died starting: _replace counts it
            return
        future = worker.task[0]
        try:
            ok, value = worker.conn.recv()
        except (EOFError, OSError):
            return  # died mid-reply: _replace fails the task
        except Exception as exc:  # noqa: BLE001 - a reply that does not unpickle
            ok, value = False, RuntimeError(f"cannot read the worker's reply: {exc}")
        worker.task = None
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def _replace(self, worker: _Worker) -> None:
        worker.process.join(1.0)
        if worker.process.is_alive():
            return
        self._workers.remove(worker)
        worker.conn.close()
        reason = _describe_exit(worker.process.exitcode)
        exited_cleanly = worker.process.exitcode == 0
        task = worker.task
        if not exited_cleanly:
            self.deaths += 1
            if self._on_death is not None:
                self._on_death(worker.process.pid, task and task[1:])
        if task is not None:
            task[0].set_exception(WorkerDied(
                f"the worker process (pid {worker.process.pid}) died on it: {reason}"))
        elif not exited_cleanly:
            self._idle_deaths += 1
        with self._lock:
            closing = self._closing
        if closing:
            return
        if self._idle_deaths > self._budget:
            self._break(f"worker processes keep dying before they run anything ({reason})")
            return
        with _frozen_heap():
            self._workers.append(_Worker(self._context, *self._spawn_args))

    def _break(self, message: str) -> None:
        with self._lock:
            self._closing = True
            self._broken = message
            queued = list(self._queue)
            self._queue.clear()
        for future, _, _ in queued:
            if future.set_running_or_notify_cancel():
                future.set_exception(PoolBroken(message))
