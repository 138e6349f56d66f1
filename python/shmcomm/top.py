"""``python -m shmcomm top``: a live view of every channel on the machine, refreshed in place.

Each refresh reads every segment's header and peer registry (read-only, without attaching) and
compares it with the previous refresh: the message rate is the growth of the channel's head over
the time between the two reads. Plain ANSI text by default, which works over ssh and in any
terminal; the ``rich`` package (``pip install "shmcomm[tui]"``) draws a nicer table when installed.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Dict, List, Optional

from .errors import SHMError
from .segments import SegmentInfo, list_segments, segment_peers

COLUMNS = ["CHANNEL", "PATTERN", "STATE", "PEERS", "MSG/S", "MESSAGES", "LAG", "OVERRUN", "DEAD",
           "SLOTS"]

# Short names of the two registry roles per pattern, as shown in the PEERS column.
_ROLE_ABBREV = {"pubsub": ("pub", "sub"), "reqrep": ("rep", "req"), "pipeline": ("push", "pull"),
                "pair-m2s": ("master", "slave"), "pair-s2m": ("slave", "master"),
                "stream": ("writer", "reader")}


def peers_cell(info: SegmentInfo) -> str:
    """The live peers of a channel in a few characters: ``1pub+2sub``."""
    keeper, follower = _ROLE_ABBREV.get(info.pattern, ("keep", "follow"))
    return f"{info.publishers}{keeper}+{info.subscribers}{follower}"


class Sample:
    """What one refresh read about one segment."""

    def __init__(self, info: SegmentInfo, at: float) -> None:
        self.info = info
        self.at = at
        self.lag: Optional[int] = None  # the slowest live subscriber's lag behind the head
        self.overrun = 0  # messages already overwritten before a live subscriber read them
        self.dead = 0  # registered peers whose process died (not reaped yet)
        if info.error is None:
            try:
                peers = segment_peers(str(info), info)
            except SHMError:  # removed between the listing and this read
                peers = []
            for peer in peers:
                if not peer.alive:
                    self.dead += 1
                    continue
                if peer.lag is not None:
                    self.lag = max(self.lag or 0, peer.lag)
                    self.overrun += peer.overrun or 0
        self.state = ("unreadable" if info.error else "stale" if info.stale else "live")


def take_samples() -> Dict[str, Sample]:
    now = time.monotonic()
    return {str(info): Sample(info, now) for info in list_segments()}


def _rate(before: Optional[Sample], now: Sample) -> Optional[float]:
    if before is None or before.info.error or now.info.error:
        return None
    if before.info.session_id != now.info.session_id or now.info.head < before.info.head:
        return None  # replaced by a restarted creator: the head started again
    elapsed = now.at - before.at
    return (now.info.head - before.info.head) / elapsed if elapsed > 0 else None


def _human_rate(rate: Optional[float]) -> str:
    if rate is None:
        return "-"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if rate >= limit:
            return f"{rate / limit:.1f}{suffix}"
    return f"{rate:.0f}"


def table_rows(before: Dict[str, Sample], now: Dict[str, Sample]) -> List[List[str]]:
    rows = []
    for name, s in sorted(now.items(), key=lambda item: (item[1].info.channel, item[0])):
        info = s.info
        readable = info.error is None
        rows.append([
            info.channel or name,
            info.pattern,
            s.state,
            peers_cell(info) if readable else "-",
            _human_rate(_rate(before.get(name), s)),
            str(info.head) if readable else "-",
            "-" if s.lag is None else str(s.lag),
            str(s.overrun) if readable else "-",
            str(s.dead) if readable else "-",
            f"{info.num_slots}x{info.slot_size}" if readable else "-",
        ])
    return rows


def _title(count: int, interval: float) -> str:
    return (f"shmcomm top: {count} channel(s), every {interval:g} s, {time.strftime('%H:%M:%S')}"
            "  (Ctrl-C quits)")


def render_plain(rows: List[List[str]], title: str) -> str:
    lines = [title, ""]
    if not rows:
        lines.append("no shmcomm channels on this machine")
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [COLUMNS] + rows) for i in range(len(COLUMNS))]
    for row in [COLUMNS] + rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


class _PlainScreen:
    """Redraws in place on a terminal (cursor home, clear); on a pipe, prints frame after frame."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.tty = out.isatty()
        self.frames = 0

    def show(self, rows: List[List[str]], title: str) -> None:
        text = render_plain(rows, title)
        if self.tty:
            self.out.write("\x1b[H\x1b[2J" + text + "\n")
        else:
            self.out.write(("\n" if self.frames else "") + text + "\n")
        self.out.flush()
        self.frames += 1

    def close(self) -> None:
        pass


class _RichScreen:
    """The same table drawn by rich: live in place on a terminal, frame after frame on a pipe."""

    def __init__(self, out: IO[str]) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out)
        if not self.console.is_terminal:  # a pipe has no width: never cut the table
            self.console = Console(file=out, width=250)
        self.live: Optional[Any] = None
        if self.console.is_terminal:
            self.live = Live(console=self.console, auto_refresh=False, screen=False)
            self.live.start()

    def show(self, rows: List[List[str]], title: str) -> None:
        from rich.table import Table

        table = Table(title=title, title_justify="left", box=None, header_style="bold")
        numeric = {"MSG/S", "MESSAGES", "LAG", "OVERRUN", "DEAD"}
        for column in COLUMNS:
            if column == "CHANNEL":  # a narrow terminal folds long names, never the numbers
                table.add_column(column, overflow="fold", ratio=1, min_width=20)
            else:
                table.add_column(column, justify="right" if column in numeric else "left",
                                 no_wrap=True, min_width=len(column))
        styles = {"live": "green", "stale": "yellow", "unreadable": "red"}
        for row in rows:
            cells = list(row)
            cells[2] = f"[{styles.get(row[2], 'white')}]{row[2]}[/]"
            table.add_row(*cells)
        if not rows:
            table.caption = "no shmcomm channels on this machine"
        if self.live is not None:
            self.live.update(table, refresh=True)
        else:
            self.console.print(table)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def run_top(interval: float = 1.0, iterations: int = 0, ui: str = "auto",
            out: Optional[IO[str]] = None) -> int:
    """Shows the table every ``interval`` seconds, ``iterations`` times (0: until Ctrl-C). ``ui`` is
    "plain", "rich" or "auto" (rich when it is installed and the output is a terminal)."""
    stream = out if out is not None else sys.stdout
    if ui == "rich" and not _rich_available():
        print('shmcomm top: --ui rich needs the rich package: pip install "shmcomm[tui]" '
              "(or use --ui plain)", file=sys.stderr)
        return 2
    use_rich = ui == "rich" or (ui == "auto" and stream.isatty() and _rich_available())
    screen: Any = _RichScreen(stream) if use_rich else _PlainScreen(stream)
    try:
        before = take_samples()
        shown = 0
        while iterations == 0 or shown < iterations:
            time.sleep(interval)
            now = take_samples()
            screen.show(table_rows(before, now), _title(len(now), interval))
            before = now
            shown += 1
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a live view ends
    finally:
        screen.close()
    return 0


__all__ = ["run_top", "take_samples", "table_rows", "render_plain", "peers_cell"]
