"""The one registry behind the extension points: strategies, models and data sources.

Names map to entries; a name is registered once; ``names("res*")`` lists them; an unknown name is
one ``ValueError`` that quotes it, suggests the closest and lists the valid ones. What an entry must
satisfy is its decorator's business (``register``, ``register_model``, ``register_source``).
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from tidal.errors import did_you_mean

__all__ = ["Registry", "check_callable"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> entries of one ``kind`` ("strategy", "model", "dataset": named so in errors).

    ``unknown``: the message of a failed lookup, with ``{name!r}``, ``{hint}`` (`` (did you mean
    'x'?)`` or empty) and ``{names}``; ``preferred``: suggested before other close names; ``also``:
    valid names that are no entry (listed and suggested); ``load``: called before each lookup (it
    imports the modules that register entries, once); ``quote``: list the names as 'a', 'b'."""

    def __init__(self, kind: str, unknown: str, preferred: Iterable[str] = (), also: Iterable[str] = (),
                 load: Callable[[], None] = lambda: None, quote: bool = False) -> None:
        self.kind, self._unknown, self._preferred, self._also = kind, unknown, tuple(preferred), tuple(also)
        self._load, self._quote = load, quote
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T, description: str) -> T:
        """Register ``entry`` as ``name``; a name taken by another entry, or no one-line ``description``
        (what the CLI lists), is refused."""
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"{self.kind} name {name!r} must be a non-empty string without surrounding spaces")
        if not description or "\n" in description:
            raise ValueError(f"{self.kind} {name!r} needs a one-line description (the CLI lists it)")
        old = self._entries.get(name)
        if old is not None and old is not entry:
            what = getattr(old, "__name__", None) or getattr(old, "description", type(old).__name__)
            raise ValueError(f"{self.kind} name {name!r} is already registered ({what}); choose another name")
        self._entries[name] = entry
        return entry

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style ``pattern``, sorted."""
        self._load()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __getitem__(self, name: str) -> T:
        """The entry registered as ``name``; an unknown name raises :meth:`unknown`."""
        if name not in self:
            raise self.unknown(name)
        return self._entries[name]

    def unknown(self, name: str, valid: Iterable[str] | None = None, cutoff: float = 0.6) -> ValueError:
        """The error for an unknown ``name``: ``valid`` (default: the registered names) listed, the
        closest suggested (``cutoff``: difflib's least similarity of a suggestion)."""
        valid = [*self.names(), *self._also] if valid is None else list(valid)
        listed = ", ".join(map(repr, valid) if self._quote else valid)
        hint = did_you_mean(str(name), valid, preferred=self._preferred, cutoff=cutoff)
        return ValueError(self._unknown.format(name=name, hint=hint, names=listed))


def check_callable(what: str, fn: object, positional: int, keywords: Iterable[str]) -> None:
    """Refuse ``fn`` unless it takes ``positional`` arguments and ``keywords``, as a registry calls
    it (a registered function takes ``**_`` for the keywords it ignores)."""
    keywords = tuple(keywords)
    try:
        inspect.signature(fn).bind(*[None] * positional, **dict.fromkeys(keywords))  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: {getattr(fn, '__name__', fn)!s} cannot be called with {positional} argument(s) "
                         f"and the keywords {', '.join(keywords)} ({exc}); take **_ for those it ignores") from None
