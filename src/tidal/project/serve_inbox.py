"""``tidal serve``'s inbox (:mod:`tidal.project.serve_state`): acknowledged labels on their way to the store.

An accepted annotation is appended to ``PROJECT/serve-inbox.jsonl`` and fsynced before the
answer (so killing the server loses nothing acknowledged), and shown at once in
:attr:`Inbox.pending`; :meth:`Inbox.store` writes the records into the project store under the
project lock and drops them from the file. Storing twice changes nothing. While another tidal
command holds the project, the labels wait in the inbox: logged once when the wait begins
(naming the holder) and once when they are stored.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["INBOX_NAME", "Inbox"]

INBOX_NAME = "serve-inbox.jsonl"  # accepted annotations not yet in the store, one JSON record a line


class Inbox:
    """``PROJECT/serve-inbox.jsonl`` and its overlay ``pending``: id -> (class or None: deleted, source).

    A record is ``{"pairs": [[id, class or None], ...], "source": str, "at": POSIX seconds}``.
    Hold :attr:`lock` to read ``pending`` and :meth:`append` together (one writer at a time).
    """

    def __init__(self, project: Path, log: Callable[[str], None]) -> None:
        self.project, self.path, self.log = project, project / INBOX_NAME, log
        self.lock = threading.Lock()  # one writer of the file and the pending overlay at a time
        self.pending: dict[int, tuple[int | None, str]] = {}
        self._held_since: float | None = None  # time.monotonic() when storing began waiting for the project lock
        for rec in self.read():
            self._overlay(rec)

    @property
    def waiting(self) -> bool:
        """Storing is waiting for another process's project lock (said once, when the wait began)."""
        return self._held_since is not None

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a line cut short by a kill before its fsync: it was never acknowledged
                continue
        return out

    def has_records(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except OSError:
            return False

    def _overlay(self, rec: dict) -> None:
        for i, c in rec["pairs"]:
            self.pending[int(i)] = (c, rec["source"])

    def append(self, rec: dict) -> None:
        """Write ``rec`` to the inbox durably (fsync) and into the pending overlay (hold :attr:`lock`)."""
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._overlay(rec)

    def store(self) -> int:
        """Store the inbox's records under the project lock, in order, then drop them from the inbox.

        One thread calls this (the server's worker). :attr:`lock` is held just to read and to
        rewrite the inbox, never while waiting for the project lock, so webhooks keep answering at once.
        """
        from tidal.io import atomic_write_text
        from tidal.project.project import open_project

        with self.lock:
            records = self.read()
        if not records:
            return 0
        with open_project(self.project, on_wait=self._lock_held) as (store, _):
            for rec in records:
                sets = [(i, c) for i, c in rec["pairs"] if c is not None]
                if sets:
                    store.set_labels(sets, source=rec["source"])
                gone = [i for i, c in rec["pairs"] if c is None]
                if gone:
                    sources = store.label_sources()
                    store.remove_labels([i for i in gone if sources.get(i, ("",))[0] == rec["source"]])
        with self.lock:  # records that came in meanwhile stay in the inbox (and pending)
            rest = self.read()[len(records):]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in rest))
            self.pending.clear()
            for rec in rest:
                self._overlay(rec)
        if self._held_since is not None:
            self.log(f"tidal serve: project {self.project} is free again; stored {len(records)} inbox records after "
                     f"waiting {time.monotonic() - self._held_since:.1f} s")
            self._held_since = None
        return len(records)

    def _lock_held(self, holder: str) -> None:
        """``open_project``'s ``on_wait``: say once, when the wait begins, that the labels wait for the lock."""
        if self._held_since is None:
            self._held_since = time.monotonic()
            who = f" ({holder[:200]})" if holder else ""
            self.log(f"tidal serve: project {self.project} is in use by another tidal process{who}; acknowledged "
                     f"labels wait in {INBOX_NAME} until it finishes")
