"""Optional bearer token, from a literal or a file re-read when it changes (rotation)."""

from __future__ import annotations

import hmac
import os
from pathlib import Path


class TokenSource:
    def __init__(self, token: str | None = None, token_file: str | Path | None = None) -> None:
        self._token = token
        self._file = Path(token_file) if token_file else None
        self._stamp: tuple[int, int] | None = None

    @property
    def enabled(self) -> bool:
        return self._token is not None or self._file is not None

    def current(self) -> str | None:
        if self._file is not None:
            try:
                st = os.stat(self._file)
            except OSError:
                return self._token  # keep the last good token if the file vanishes mid-rotation
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                self._stamp = stamp
                self._token = self._file.read_text().strip() or None
        return self._token

    def check(self, authorization: str | None) -> bool:
        """True if no token is configured or the header carries the current token."""
        if not self.enabled:
            return True
        expected = self.current()
        if expected is None or not authorization:
            return False
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(presented.strip().encode(), expected.encode())
