"""
Config files from outside are hostile input: a FIFO, a huge file, a YAML alias bomb,
deep nesting, a syntax error over a secret — each refused at once with a clear
problem, never a hang, never a fragment of the file's text.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import clean_env
from ron_metrics import ConfigError, load_config

BIN = Path(sys.executable).parent

BOMB = """\
file_format: "1.0"
a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def _declarative(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(env={"OTEL_CONFIG_FILE": str(path)})
    return caught.value


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    """A 500-byte file that would expand to 10^9 nodes: one problem, no hang."""
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    error = _declarative(path)
    assert error.keys == ("OTEL_CONFIG_FILE",)
    assert "expands to more than" in str(error)


def test_a_huge_declarative_file_is_refused_by_its_size(tmp_path: Path) -> None:
    """50 MB of YAML is refused by its size, before it is parsed."""
    path = tmp_path / "huge.yaml"
    with path.open("w") as handle:
        handle.write('file_format: "1.0"\n')
        handle.write("# padding\n" * 5_000_000)
    error = _declarative(path)
    assert "larger than" in str(error)


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    """A structure nested deeper than the bound is refused with its position."""
    path = tmp_path / "deep.yaml"
    path.write_text('file_format: "1.0"\nx: ' + "[" * 200 + "]" * 200 + "\n")
    assert "nests deeper than" in str(_declarative(path))


def test_a_yaml_syntax_error_shows_position_not_text(tmp_path: Path) -> None:
    """The message gives line and column, never the secret on the broken line."""
    path = tmp_path / "broken.yaml"
    path.write_text('file_format: "1.0"\nheaders: {authorization: "Bearer s3cr3t-tok\n')
    error = str(_declarative(path))
    assert "line" in error and "column" in error
    assert "s3cr3t" not in error


def test_a_schema_error_shows_no_value(tmp_path: Path) -> None:
    """A value of the wrong type: the message names no value from the file."""
    path = tmp_path / "schema.yaml"
    path.write_text('file_format: "1.0"\ndisabled: "hunter2-value"\n')
    assert "hunter2" not in str(_declarative(path))


@pytest.mark.parametrize("variable", ["RON_METRICS_CONFIG", "OTEL_CONFIG_FILE"])
def test_a_fifo_as_config_file_is_refused_at_once(
    tmp_path: Path, variable: str
) -> None:
    """check-config on a FIFO answers (exit 2, naming it) instead of hanging."""
    fifo = tmp_path / "config"
    os.mkfifo(fifo)
    result = subprocess.run(
        [str(BIN / "ron-metrics"), "check-config"],
        env=clean_env(**{variable: str(fifo), "OTEL_SERVICE_NAME": "s"}),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 2
    assert "FIFO" in result.stderr


def test_the_runner_refuses_a_fifo_config(tmp_path: Path) -> None:
    """ron-metrics run --config FIFO: exit 2 before the program, no hang."""
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    result = subprocess.run(
        [str(BIN / "ron-metrics"), "run", "--config", str(fifo), "--", "true"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 2
    assert "FIFO" in result.stderr
