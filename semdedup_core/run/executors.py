"""Where the engine's steps run: in this process, or as tasks on a Ray cluster.

The units handed to an executor are module-level functions of a part or a bucket that read and write
files (:mod:`semdedup_core.run.pipeline`), so they pickle cheaply and give the same results wherever they
run; an executor adds *where*, never *what*. ``imap`` yields ``(key, result)`` pairs as units finish, in
any order; ``imap_actors`` runs stateful units (a model loaded once per worker). A unit whose output
exists is skipped, so a killed run resumes either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from ..errors import SemDedupError

Task = tuple[Any, tuple[Any, ...]]  # (key, positional arguments)


class Executor(Protocol):
    name: str

    def imap(self, fn: Callable[..., Any], tasks: Iterable[Task]) -> Iterator[tuple[Any, Any]]: ...

    def imap_actors(
        self, cls: type, init: tuple[Any, ...], tasks: Iterable[Task], *, actors: int | None = None, num_gpus: float = 0
    ) -> Iterator[tuple[Any, Any]]: ...


class LocalExecutor:
    """Runs each task in this process, one after another."""

    name = "local"

    def imap(self, fn: Callable[..., Any], tasks: Iterable[Task]) -> Iterator[tuple[Any, Any]]:
        for key, args in tasks:
            yield key, fn(*args)

    def imap_actors(
        self, cls: type, init: tuple[Any, ...], tasks: Iterable[Task], *, actors: int | None = None, num_gpus: float = 0
    ) -> Iterator[tuple[Any, Any]]:
        """Stateful units (an encoder loaded once): one ``cls(*init)`` called with each task's arguments."""
        worker = cls(*init)
        for key, args in tasks:
            yield key, worker(*args)


class RayExecutor:
    """Runs each task as a Ray task, with at most ``max_in_flight`` submitted at once.

    ``address``: a running cluster (``"auto"``, ``"ray://host:10001"``), or ``None`` to start a local
    one. Workers need ``semdedup_core`` importable (install the package on the cluster, or pass
    ``runtime_env={"working_dir": ...}``). ``num_gpus`` per task lets the score step use the workers'
    GPUs (run with ``device="cuda"`` then).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: float = 1,
        num_gpus: float = 0,
        max_in_flight: int = 16,
        runtime_env: dict[str, Any] | None = None,
        init_kwargs: dict[str, Any] | None = None,
    ):
        try:
            import ray
        except ImportError:
            raise SemDedupError("the ray executor needs Ray: pip install 'ray==2.60.0'") from None
        self._ray = ray
        if not ray.is_initialized():
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False, **(init_kwargs or {}))
        self.num_cpus, self.num_gpus, self.max_in_flight = num_cpus, num_gpus, max_in_flight

    def imap(self, fn: Callable[..., Any], tasks: Iterable[Task]) -> Iterator[tuple[Any, Any]]:
        ray = self._ray
        remote = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus)(fn)
        pending: dict[Any, Any] = {}
        todo = iter(tasks)
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < self.max_in_flight:
                try:
                    key, args = next(todo)
                except StopIteration:
                    exhausted = True
                    break
                pending[remote.remote(*args)] = key
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                key = pending.pop(ref)
                yield key, self._get(ref)

    def imap_actors(
        self, cls: type, init: tuple[Any, ...], tasks: Iterable[Task], *, actors: int | None = None, num_gpus: float = 0
    ) -> Iterator[tuple[Any, Any]]:
        """Stateful units on a pool of Ray actors, each ``cls(*init)`` built once (a model loaded once per
        actor): ``actors`` of them (default: the cluster's CPUs, or its GPUs with ``num_gpus``)."""
        ray = self._ray
        todo = list(tasks)
        if not todo:
            return
        n = actors or max(1, int(ray.cluster_resources().get("GPU" if num_gpus else "CPU", 1) // (num_gpus or 1)))
        actor_cls = ray.remote(num_cpus=0 if num_gpus else 1, num_gpus=num_gpus or 0)(cls)
        idle = [actor_cls.remote(*init) for _ in range(min(n, len(todo)))]
        pending: dict[Any, tuple[Any, Any]] = {}
        queue = iter(todo)
        while True:
            while idle:
                nxt = next(queue, None)
                if nxt is None:
                    break
                worker = idle.pop()
                pending[worker.__call__.remote(*nxt[1])] = (nxt[0], worker)
            if not pending:
                return
            ready, _ = ray.wait(list(pending), num_returns=1)
            key, worker = pending.pop(ready[0])
            idle.append(worker)
            yield key, self._get(ready[0])

    def _get(self, ref: Any) -> Any:
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # a user-fixable problem keeps its one-line message
            if isinstance(exc.cause, SemDedupError):
                raise SemDedupError(str(exc.cause)) from None
            raise


def get_executor(executor: str | Executor | None) -> Executor:
    """``None``/``"local"`` → :class:`LocalExecutor`; ``"ray"`` → :class:`RayExecutor` (local cluster or
    the one ``RAY_ADDRESS`` names); an object with ``imap`` is used as it is."""
    if executor is None or executor == "local":
        return LocalExecutor()
    if executor == "ray":
        import os

        return RayExecutor(os.environ.get("RAY_ADDRESS"))
    if hasattr(executor, "imap"):
        return executor  # type: ignore[return-value]
    raise SemDedupError(f"executor must be 'local', 'ray' or an Executor object, got {executor!r}")
