"""PUSH/PULL: a work queue. Any number of Pushers and Pullers, in any number of processes; each
message goes to exactly one Puller, none is lost, none duplicated. Pushers wait while the queue is
full (or raise :class:`SHMBufferFullError` when ``block=False``). A Puller killed while taking a
message gives it back to the queue; a Pusher killed while writing one leaves a slot the Pullers skip."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from . import _binding as b
from ._io import Receiver, Sender
from .errors import SHMTypeError

ffi, lib = b.ffi, b.lib


def _stats_dict(s: Any) -> Dict[str, Any]:
    return {
        "num_slots": s.num_slots,
        "slot_size": s.slot_size,
        "head": s.head,
        "tail": s.tail,
        "msg_count": s.head,
        "queued": max(0, s.head - s.tail),
        "pushers": s.publishers,
        "pullers": s.subscribers,
        "single_writer": bool(s.flags & lib.SHMC_SINGLE_WRITER),
        "payload_pool": bool(s.flags & lib.SHMC_PAYLOAD_POOL),
    }


class Pusher(Sender):
    """Creates work queue ``name`` (or joins it as one more pusher) and pushes work items to it.

    ``num_slots`` is the queue depth, ``slot_size`` the largest item in bytes; ``mode`` the segment's
    permission (0o600 default, 0o660 group, 0o666 everyone). ``single_writer=True`` declares this
    Pusher the queue's only one (another live Pusher gets :class:`SHMConnectionError`, one opened after
    it died takes the queue over, batches go faster); every Pusher of a queue must agree on it.
    """

    def __init__(self, name: str, num_slots: int = 128, slot_size: int = 4096,
                 serialization: str = "pickle", *, single_writer: bool = False, max_peers: int = 64,
                 mode: int = 0o600) -> None:
        super().__init__(name)
        self.single_writer = bool(single_writer)
        self._open_keeper("push", "Pusher", num_slots, slot_size, serialization, max_peers, mode,
                          lib.SHMC_SINGLE_WRITER if single_writer else 0)
        self._send = lib.shmc_push_send
        self._try_send = lib.shmc_push_try_send
        self._send_many = lib.shmc_push_send_many

    def send(self, data: Any, *, block: bool = True, timeout: Optional[float] = None) -> bool:
        """Serializes ``data`` and queues it. While the queue is full, waits up to ``timeout`` seconds
        (None: forever; then :class:`SHMTimeoutError`), or raises :class:`SHMBufferFullError` at once
        with ``block=False``. Returns True once queued."""
        return self.send_bytes(self._serialize(data), block=block, timeout=timeout)

    # send_bytes(payload, *, block=True, timeout=None): Sender's, the same waiting as send().

    def send_many_bytes(self, payloads: Sequence[Any], *, block: bool = True,
                        timeout: Optional[float] = None) -> int:
        """Queues a batch of bytes-like items in one C call (the fast path for throughput). Returns
        how many were queued; on a full queue the error carries ``.sent``."""
        return self._send_many_payloads(payloads, block, timeout)

    def send_packed(self, data: Any, sizes: Any, *, block: bool = True, timeout: Optional[float] = None) -> int:
        """Queues a batch of items packed back to back in ``data`` (any C-contiguous bytes-like object:
        bytes, bytearray, memoryview, numpy array) in one C call, with no Python object per item: the
        fast path for arrays of fixed-size records. ``sizes`` is an int (every item has that many
        bytes; data's size must be a multiple of it) or a buffer of uint64 with one size per item
        (``array('Q')``, a numpy.uint64 array) adding up to data's size. Each is an ordinary item for
        any Puller. Returns how many were queued; on a full queue (``block=False``, or ``timeout``
        spent) the error carries ``.sent``."""
        return self._send_packed(data, sizes, block, timeout)

    def send_many(self, items: Sequence[Any], *, block: bool = True,
                  timeout: Optional[float] = None) -> int:
        """Serializes and queues a batch of items in one C call."""
        try:
            payloads = [self._serialize(x) for x in items]
        except TypeError:
            raise SHMTypeError(f"send_many needs an iterable of items, not {type(items).__name__}") from None
        return self._send_many_payloads(payloads, block, timeout)

    def _full_message(self) -> str:
        return f"work queue {self.name!r} is full: no Puller has taken the oldest item"

    def _close_handle(self, handle: Any) -> None:
        lib.shmc_push_close(handle)

    def stats(self) -> Dict[str, Any]:
        """Queue statistics: head (items ever queued), tail (items taken), queued, sent (by this
        pusher), pushers and pullers alive, geometry."""
        s = self._c_stats(lib.shmc_push_stats)
        out = _stats_dict(s)
        out.update(name=self.name, sent=s.sent, drop_count=0)
        return out

    def __repr__(self) -> str:
        if self.closed:
            return f"<Pusher {self.name!r} closed>"
        s = self.stats()
        return (f"<Pusher {self.name!r} num_slots={s['num_slots']} slot_size={s['slot_size']} "
                f"sent={s['sent']} queued={s['queued']} pullers={s['pullers']}>")


class Puller(Receiver):
    """Attaches to work queue ``name``, waiting up to ``timeout_connect`` seconds for a Pusher.
    Pullers compete: each item goes to exactly one of them. ``spin_us`` is how long a receive
    busy-waits before it sleeps on a futex."""

    def __init__(self, name: str, timeout_connect: float = 5.0, serialization: str = "pickle", *,
                 spin_us: int = 50) -> None:
        super().__init__(name)
        self._open_follower("pull", "Pusher", timeout_connect, serialization, spin_us)
        self._next = lib.shmc_pull_next
        self._recv = lib.shmc_pull_recv
        self._buffer_fn = lib.shmc_pull_buffer
        self._recv_many = lib.shmc_pull_recv_many
        self._refresh_buffer()

    def _close_handle(self, handle: Any) -> None:
        lib.shmc_pull_close(handle)

    @property
    def pusher_alive(self) -> bool:
        """True while at least one Pusher process of the queue is alive."""
        return bool(lib.shmc_pull_pusher_alive(self._require()))

    def stats(self) -> Dict[str, Any]:
        """received (by this puller), dropped (items lost because their pusher died mid-write),
        restored (items this puller took over from a puller that died), queue head/tail."""
        s = self._c_stats(lib.shmc_pull_stats)
        out = _stats_dict(s)
        out.update(name=self.name, received=s.received, dropped=s.dropped, restored=s.restored,
                   reconnects=s.reconnects)
        return out

    def __repr__(self) -> str:
        if self.closed:
            return f"<Puller {self.name!r} closed>"
        s = self.stats()
        return f"<Puller {self.name!r} received={s['received']} queued={s['queued']}>"


__all__ = ["Pusher", "Puller"]
