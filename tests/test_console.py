"""A local run's console: one line per stage, the full stream in a log file, and a failing
stage's error on the console."""

import io

import pytest

from llarapp.errors import PipelineError
from pipelines.console import StageWriter, stage_console
from pipelines.local_run import run_locally

KFP_LINES = [  # as kfp.local prints them, colours included
    "09:00:00.000 - INFO - Executing task \x1b[96m'ingest'\x1b[0m\n",
    "    {\n      \"inputs\": {\"parameterValues\": {}}\n    }\n",
    "    ingest: 600 playlists\n",
    "09:00:03.000 - INFO - Task \x1b[96m'ingest'\x1b[0m finished with status "
    "\x1b[92mSUCCESS\x1b[0m\n",
    "09:00:03.001 - INFO - Task \x1b[96m'ingest'\x1b[0m outputs:\n    Output: 0.4123\n"
    "    dataset: Dataset( name='dataset', uri='/runs/x' )\n",
    "09:00:04.000 - INFO - Skipping conditional task 'deploy' (condition not met)\n",
]


def test_the_console_gets_a_line_per_stage_and_the_log_everything():
    log, console = io.StringIO(), io.StringIO()
    writer = StageWriter(log, console)
    for chunk in KFP_LINES:
        writer.write(chunk)
    lines = console.getvalue().splitlines()
    assert lines[0] == "  ▶ ingest"
    assert lines[1].startswith("  ✓ ingest (") and lines[1].endswith(" s)")
    assert lines[2] == "      ingest → 0.4123"
    assert lines[3] == "  – deploy skipped (its condition is false)"
    assert len(lines) == 4  # executor input, streamed logs and artifacts stay in the log
    assert log.getvalue() == "".join(KFP_LINES)


def test_a_failure_prints_the_log_tail(tmp_path, capsys):
    log = tmp_path / "run.log"
    with pytest.raises(RuntimeError), stage_console(log):
        print("Executing task 'split'")
        print("ValueError: cold_fraction must be in [0, 0.5)")
        print("Task 'split' finished with status FAILURE")
        raise RuntimeError("Pipeline finished with status FAILURE")
    out = capsys.readouterr().out
    assert "✗ split" in out and "cold_fraction must be in [0, 0.5)" in out
    assert str(log) in out and "cold_fraction" in log.read_text()


def test_a_failing_stage_error_reaches_the_console(tmp_path, capsys):
    with pytest.raises(PipelineError, match="recommend-shards"):
        run_locally(data=str(tmp_path / "missing"), workdir=tmp_path / "runs",
                    pipeline="batch", overrides=[f"model_uri={tmp_path / 'bundle'}"])
    out = capsys.readouterr().out
    assert "✗ recommend-shards" in out
    assert f"{tmp_path / 'missing'} does not exist" in out  # the component's own error
    assert "executorInput" not in out.split("--- the last")[0]  # plumbing stays in the log
