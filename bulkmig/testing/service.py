"""What every throwaway server shares, the dev servers (``bulkmig.demo.servers``) and the fault proxy alike:
``start``/``stop``, and ``with`` as the way to get both right."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Service:
    """A server a test or demo starts and must stop: ``with X(...) as x`` starts it and stops it on every
    way out of the block, an exception included.  Subclasses define ``start`` (returning the started
    server, so ``with`` binds it) and ``stop``."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
