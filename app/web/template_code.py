"""Compiled templates shared by every app a process builds (the tests build hundreds, the
``flask`` commands one each): Jinja parses and compiles a template once a process, not once
an app. A changed template's source checksum differs, so it is compiled again."""

from __future__ import annotations

import threading

from jinja2.bccache import Bucket, BytecodeCache


class ProcessBytecodeCache(BytecodeCache):
    """Jinja's bytecode cache held in this process's memory."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def load_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        code = bucket.bytecode_to_string()
        with self._lock:
            self._code[bucket.key] = code

    def clear(self) -> None:
        with self._lock:
            self._code.clear()


TEMPLATE_CODE = ProcessBytecodeCache()
