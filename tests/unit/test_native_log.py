"""What a native library writes on descriptor 2 comes out as log records, not raw lines."""

from __future__ import annotations

import logging
import os

import pytest

from app.core.native_log import native_stderr_logged


def test_lines_written_on_descriptor_2_become_log_records(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("tests.native")
    with caplog.at_level(logging.INFO, logger="tests.native"), native_stderr_logged(logger):
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n\nsecond line\n")
    assert [r.getMessage() for r in caplog.records] == [
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
        "second line",
    ]
    assert "XNNPACK" not in capfd.readouterr().err


def test_descriptor_2_is_given_back_even_when_the_block_fails(
    capfd: pytest.CaptureFixture[str],
) -> None:
    logger = logging.getLogger("tests.native")
    with pytest.raises(RuntimeError, match="boom"), native_stderr_logged(logger):
        raise RuntimeError("boom")
    os.write(2, b"after\n")
    assert "after" in capfd.readouterr().err
