"""Compiled templates are shared by the apps of one process, and a changed template is
compiled again."""

from __future__ import annotations

from pathlib import Path
from types import CodeType

from flask import Flask
from jinja2 import Environment, FileSystemLoader

from app import create_app
from app.core.service import InferenceService
from app.web.template_code import TEMPLATE_CODE, ProcessBytecodeCache


def test_a_second_environment_reuses_the_code_and_a_changed_template_is_recompiled(
    tmp_path: Path,
) -> None:
    page = tmp_path / "page.html"
    page.write_text("Hello {{ name }}")
    cache = ProcessBytecodeCache()
    compiled: list[str] = []

    class Counting(Environment):
        def _compile(self, source: str, filename: str) -> CodeType:
            compiled.append(filename)
            return super()._compile(source, filename)

    def render() -> str:
        env = Counting(loader=FileSystemLoader(tmp_path), bytecode_cache=cache)
        return env.get_template("page.html").render(name="lab")

    assert render() == "Hello lab"
    assert render() == "Hello lab"
    assert len(compiled) == 1  # the second environment loaded the first one's code
    page.write_text("Goodbye {{ name }}")
    assert render() == "Goodbye lab"
    assert len(compiled) == 2
    cache.clear()
    assert render() == "Goodbye lab"
    assert len(compiled) == 3


def test_every_app_of_the_process_shares_the_cache(
    app: Flask, app_config: dict[str, object], inference_service: InferenceService
) -> None:
    other = create_app(app_config, inference=inference_service)
    try:
        assert app.jinja_env.bytecode_cache is TEMPLATE_CODE
        assert other.jinja_env.bytecode_cache is TEMPLATE_CODE
    finally:
        other.extensions["records"].engine.dispose()
