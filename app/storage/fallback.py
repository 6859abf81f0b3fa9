"""What the thread store remembers while Redis is down, and how it hands memory back to Redis.

During an outage every thread written lands in memory. Those threads are the only copy, so
before the store returns to Redis they are written back; otherwise a continuation started during
the outage would be lost the moment Redis answers again.
"""

from __future__ import annotations

from .memory import MemoryThreads
from .redis_store import RedisThreads


class Outage:
    """One Redis outage: its latest error and the threads changed in memory since it began."""

    def __init__(self, error: str) -> None:
        self.last_error = error
        # continuation id -> number of writes, so a write-back can tell a thread changed under it
        self._changes: dict[str, int] = {}

    @property
    def pending(self) -> int:
        return len(self._changes)

    def changed(self, continuation_id: str) -> None:
        self._changes[continuation_id] = self._changes.get(continuation_id, 0) + 1

    async def write_back(self, memory: MemoryThreads, redis: RedisThreads) -> int:
        """Copy every changed thread to Redis until none is pending; return the copies written.

        The memory copy is what callers saw during the outage, so it replaces whatever Redis holds
        under that id. A thread appended to while its copy was in flight is copied again. Raises
        the Redis error when Redis fails again, leaving the rest pending.
        """
        copied = 0
        while self._changes:
            for continuation_id, writes in list(self._changes.items()):
                turns = memory.load(continuation_id)
                ttl = memory.remaining_ttl(continuation_id)
                if turns is not None and ttl is not None:
                    await redis.replace(continuation_id, turns, ttl)
                    copied += 1
                if self._changes.get(continuation_id) == writes:
                    del self._changes[continuation_id]
        return copied
