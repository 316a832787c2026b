"""``tidal serve``'s wait for webhooks (:mod:`tidal.project.serve_state`): which annotations have come.

Label Studio asks for a retrain (``START_TRAINING``, inside the save of the N-th annotation)
BEFORE it sends that annotation's webhook, so a retrain first waits for the annotations it was
asked for: with a Label Studio URL, token and project id, :meth:`Webhooks.wait_for` reads the
project's annotations from Label Studio's API and waits (polling, ``wait_labels`` s at most: 30)
until there are at least as many as the request counted (``total_annotations_number`` of the
payload's project; a ``/train`` call lists them) and the webhook of every one, at its last
update, has arrived (or it was there when the server started: :meth:`Webhooks.take_baseline`);
a wait that is not instant is logged, and after a timeout the retrain goes on without the
missing ones and logs them. Without API access it sleeps ``settle`` s (1) instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["EARLIER", "WAIT_LABELS", "Webhooks", "short_error"]

WAIT_LABELS = 30.0  # s: the longest a retrain waits for the webhooks of the annotations it was asked for
EARLIER = 2.0  # s: an annotation's webhook seen at most this much before its last update counts as that update's


def _when(stamp) -> float | None:
    """Label Studio's ``updated_at`` (ISO 8601) as POSIX seconds; None if it is not one."""
    from datetime import datetime, timezone

    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        t = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def short_error(exc: Exception, limit: int | None = None) -> str:
    """``"Type: message"`` on one line, the message cut to ``limit`` characters (None: whole)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:limit]}"


class Webhooks:
    """The annotations whose webhooks have come, and a retrain's wait for those it was asked for.

    ``wake``: the server's condition (guards :attr:`seen`; notified on each webhook); ``connect``:
    ``(API client, Label Studio project id)``, or None without a URL or project id (yet).
    """

    def __init__(self, wake: threading.Condition, connect: Callable[[], tuple[Any, int] | None],
                 log: Callable[[str], None], settle: float, wait_labels: float) -> None:
        self._wake, self._connect, self.log = wake, connect, log
        self.settle, self.wait_labels = settle, wait_labels
        # annotation id -> (updated_at, when received) of every annotation a webhook brought (guarded by wake)
        self.seen: dict[int, tuple[str | None, float]] = {}
        self.baseline: dict[int, str | None] | None = None  # Label Studio's annotations when the server started
        self._baseline_ok = False  # ... listed (else annotations updated before _started count as there)
        self._started = time.time()

    def note(self, aid, updated_at) -> None:
        """A webhook brought annotation ``aid`` as of ``updated_at`` (stored, skipped or refused: it came)."""
        if isinstance(aid, bool) or not isinstance(aid, int):
            return
        with self._wake:
            self.seen[aid] = (updated_at if isinstance(updated_at, str) else None, time.time())
            self._wake.notify_all()

    @staticmethod
    def _annotations(api, project: int) -> dict[int, tuple[str | None, bool]]:
        """Label Studio's annotations of ``project``: id -> (updated_at, was_cancelled)."""
        out = {}
        for t in api.tasks(project):
            for a in t.get("annotations") or []:
                if isinstance(a, dict) and isinstance(a.get("id"), int):
                    out[a["id"]] = (a.get("updated_at"), bool(a.get("was_cancelled")))
        return out

    def take_baseline(self) -> None:
        """Remember the annotations Label Studio has when the server starts: no webhook will bring them."""
        link = self._connect()
        if link is None or self.baseline is not None:
            return
        try:
            self.baseline = {i: u for i, (u, _) in self._annotations(*link).items()}
            self._baseline_ok = True
        except Exception as exc:  # noqa: BLE001 - Label Studio not up: go by the clock (_came)
            self.baseline = {}
            self.log(f"tidal serve: could not list Label Studio project {link[1]}'s annotations "
                     f"({short_error(exc, 200)}); a retrain waits only for annotations updated after the server "
                     "started")

    def _came(self, aid: int, updated_at) -> bool:
        """Has the webhook of annotation ``aid`` as of ``updated_at`` arrived, or was it in Label Studio already
        when the server started? (Called with ``wake`` held.)"""
        t = _when(updated_at)

        def covers(stamp) -> bool:  # a webhook of this update, or of a later one
            w = _when(stamp)
            return t is None or w is None or w >= t - EARLIER

        if aid in self.seen and covers(self.seen[aid][0]):
            return True
        if self.baseline and aid in self.baseline and covers(self.baseline[aid]):
            return True
        if not self._baseline_ok:  # Label Studio's annotations at the start are unknown: go by the clock
            return t is not None and t < self._started - EARLIER
        return False

    def wait_for(self, count: int | None, listed: dict[int, str | None]) -> None:
        """Wait until the annotations a retrain was asked for have come by webhook (see the module's doc)."""
        link = self._connect()
        if link is None:
            if self.settle > 0:
                time.sleep(self.settle)  # no API: the webhook of the annotation that asked comes right after
            return
        t0 = time.monotonic()
        while True:
            try:
                there = self._annotations(*link)
            except Exception as exc:  # noqa: BLE001 - Label Studio unreachable: the old fixed wait
                self.log(f"tidal serve: could not list Label Studio project {link[1]}'s annotations "
                         f"({short_error(exc, 200)}); retraining after {self.settle:g} s")
                time.sleep(self.settle)
                return
            live = sum(1 for _, cancelled in there.values() if not cancelled)
            with self._wake:
                missing = sorted({i for i, (u, _) in there.items() if not self._came(i, u)}
                                 | {i for i, u in listed.items() if not self._came(i, u)})
            short = count is not None and live < count
            waited = time.monotonic() - t0
            if not missing and not short:
                if waited >= 0.5:
                    self.log(f"tidal serve: waited {waited:.1f} s for the webhooks of the annotations Label Studio "
                             "has before retraining")
                return
            if waited >= self.wait_labels:
                what = [f"annotation{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing[:20]))}"] if missing \
                    else []
                if short:
                    what.append(f"{count - live} of the {count} annotations it counted")
                self.log(f"tidal serve: retraining without {' and '.join(what)}: no webhook within "
                         f"{self.wait_labels:g} s")
                return
            with self._wake:
                self._wake.wait(timeout=0.25)
