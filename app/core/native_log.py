"""Lines a native library writes straight to the process's stderr, brought into logging.

LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on file
descriptor 2, past Python's logging, so a server whose every log line is JSON would
emit one that is not. Around such a call, descriptor 2 points at a temporary file, and
what was written there is logged line by line afterwards: nothing is lost or unformatted.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# One redirection at a time: descriptor 2 belongs to the whole process.
_LOCK = threading.Lock()


@contextmanager
def native_stderr_logged(logger: logging.Logger, level: int = logging.INFO) -> Iterator[None]:
    """Run the block with descriptor 2 captured; log what it received, one record a line."""
    with _LOCK, tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines():
                if line.strip():
                    logger.log(level, "%s", line.strip())
