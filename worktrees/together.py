"""Two git steps at once, with their errors raised as themselves.

trio's nursery gathers the errors of its tasks in an exception group; a caller of the
worktree manager or of :mod:`worktrees.changes` is promised one error (:class:`GitFailed`,
say) or a plain cancellation, which these keep.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

__all__ = ["beside", "plain"]


async def beside(
    main: Callable[[], Awaitable[object]], side: Callable[[], Awaitable[object]]
) -> None:
    """Run ``main`` and ``side`` at once; return when both are done. The first error either
    raised is raised as itself (not in an exception group), once both have ended (an error
    cancels the other): a caller's undo then never runs beside either."""
    errors: list[Exception] = []

    async def guarded(fn: Callable[[], Awaitable[object]]) -> None:
        try:
            await fn()
        except Exception as exc:
            errors.append(exc)
            nursery.cancel_scope.cancel()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(guarded, side)
            await guarded(main)
    except BaseExceptionGroup as group:
        raise plain(group) from None
    if errors:
        raise errors[0]


def plain(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """A cancellation from outside, as one :class:`trio.Cancelled` (its scope catches it as
    usual) rather than a group of them; any other group as it is."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    if leaves and all(isinstance(exc, trio.Cancelled) for exc in leaves):
        return leaves[0]
    return group
