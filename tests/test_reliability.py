"""Issue 13, part B: graph state after interrupted loads, command-line errors, and library boundaries.

Each test reproduces a case of docs/RELIABILITY.md ("Graph state, command line and library boundaries")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graphdb.embedded import EmbeddedStore
from graphdb.store import IncompleteGraphError
from graphdb.uri import open_store
from medkg.cli import main
from tests.graphs import small_graph

ROOT = Path(__file__).resolve().parents[1]
META = Path(__file__).parent / "fixtures" / "umls-mini"


@pytest.fixture
def env(tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv("MEDKG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MEDKG_DATA_DIR", str(data_dir))
    monkeypatch.delenv("MEDKG_GRAPH", raising=False)
    return tmp_path


@pytest.fixture
def graph(env) -> str:
    """The UMLS fixture loaded into the default embedded graph; its URI."""
    out = env / "umls-kg"
    assert main(["kg", "build", "--source", "umls", "--umls-dir", str(META), "--out", str(out), "-q"]) == 0
    assert main(["kg", "load", str(out), "-q"]) == 0
    return f"embedded://{env / 'home' / 'graph'}"


def one_error_line(capsys) -> str:
    """The one `medkg: error:` line of stderr (warnings about skipped input lines may come before it)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("medkg:")]
    assert len(lines) == 1 and lines[0].startswith("medkg: error:") and "Traceback" not in err, err
    return lines[0]


# Case 4: a load marks the graph incomplete until it finishes


def test_reads_of_a_graph_whose_load_did_not_finish_are_refused_until_a_load_completes(graph, capsys):
    with open_store(graph) as store:
        assert store.load_state()["state"] == "complete"
    with EmbeddedStore(graph.removeprefix("embedded://"), read_only=False) as store:
        store._record_load(state="running", started="2026-01-01T00:00:00+00:00", finished=None)  # a load killed midway
    for argv in (["kg", "info"], ["kg", "lookup", "heart"], ["kg", "neighbors", "C0018787"], ["kg", "path", "C0018787", "C0018800"],
                 ["kg", "query", "MATCH (c:Concept) RETURN count(c) AS n"], ["kg", "similar", "C0018787"]):
        assert main(argv) == 2, argv
        line = one_error_line(capsys)
        assert "is incomplete: the load started at 2026-01-01T00:00:00+00:00 has not finished" in line, line
        assert "run `medkg kg load DIR` again" in line
    with pytest.raises(IncompleteGraphError):
        open_store(graph)
    assert main(["kg", "load", str(graph_dir(graph)), "-q"]) == 0  # the same load again completes it
    capsys.readouterr()
    assert main(["kg", "info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0] == {"table": "Concept", "count": 5}


def graph_dir(graph_uri: str) -> Path:
    return Path(graph_uri.removeprefix("embedded://")).parent.parent / "umls-kg"


SLOW_LOAD = """
import sys, time
from graphdb.embedded import EmbeddedStore
original = EmbeddedStore._load_relationships
def slow(self, *args):  # the concepts are written: stop here long enough to be killed
    print("concepts written", flush=True)
    time.sleep(60)
    return original(self, *args)
EmbeddedStore._load_relationships = slow
from medkg.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_load_killed_midway_leaves_a_graph_that_says_so_and_a_reload_recovers(open_kg_dir, env, capsys):
    db = env / "db"
    command = [sys.executable, "-c", SLOW_LOAD, "kg", "load", str(open_kg_dir), "--graph", f"embedded://{db}", "-q"]
    process = subprocess.Popen(command, cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "concepts written", process.stderr.read()
        # a reader during the load: the concepts are there, the IS_A edges not yet; it is told so
        assert main(["kg", "info", "--graph", f"embedded://{db}"]) == 2
        assert "has not finished (it was interrupted, or it is still running)" in one_error_line(capsys)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert main(["kg", "lookup", "effusion", "--graph", f"embedded://{db}"]) == 2
    assert "run `medkg kg load DIR` again" in one_error_line(capsys)
    assert main(["kg", "load", str(open_kg_dir), "--graph", f"embedded://{db}", "-q"]) == 0
    capsys.readouterr()
    assert main(["kg", "info", "--json", "--graph", f"embedded://{db}"]) == 0
    counts = {row["table"]: row["count"] for row in json.loads(capsys.readouterr().out)}
    assert counts["Concept"] > 1000 and counts["IS_A"] > 1000


def test_a_checkpoint_left_pending_is_finished_by_one_read_write_open(tmp_path, monkeypatch, caplog):
    """LadybugDB refuses a read-only open after a writer died mid-checkpoint ("re-open the database with
    read-write mode"); medkg opens it read-write once, which replays the checkpoint, then reads."""
    import ladybug

    path = tmp_path / "db"
    with EmbeddedStore(path, read_only=False) as store:
        store.load(small_graph())
    real, opened = ladybug.Database, []

    def pending_once(location: str, read_only: bool = False):
        opened.append(read_only)
        if read_only and len(opened) == 1:
            raise RuntimeError("Couldn't replay shadow pages under read-only mode. Please re-open the database with "
                               "read-write mode to replay shadow pages.")
        return real(location, read_only=read_only)

    monkeypatch.setattr(ladybug, "Database", pending_once)
    with open_store(f"embedded://{path}") as store:
        assert store.counts()["Concept"] == 7
    assert opened == [True, False, True]
    assert "finishing the checkpoint an interrupted write left pending" in caplog.text


def test_a_graph_locked_by_a_writer_is_named_as_being_written(tmp_path, capsys):
    path = tmp_path / "db"
    holder = subprocess.Popen([sys.executable, "-c", "import ladybug, sys, time\ndb = ladybug.Database(sys.argv[1])\n"
                               "print('open', flush=True)\ntime.sleep(60)", str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        assert main(["kg", "load", str(META), "--graph", f"embedded://{path}", "-q"]) == 2
        assert "is being written by another process (a load in progress?)" in one_error_line(capsys)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


# Case 8: numbers out of range, damaged files and Ctrl-C give one line, never a traceback


def test_out_of_range_numbers_are_one_line_errors_and_json_stays_json(graph, capsys):
    for argv, message in ((["kg", "lookup", "heart", "--limit", "-1"], "limit must be at least 1, got -1"),
                          (["kg", "path", "C0018787", "C0018800", "--max-depth", "1000"], "between 1 and 30, got 1000"),
                          (["kg", "query", "RETURN $n AS n", "--param", f"n={10**30}"], f"--param n: {10**30} does not fit in a 64-bit integer"),
                          (["kg", "query", "RETURN $n AS n", "--param", "n=[1, -1e999]"], "--param n: -inf is not a finite number"),
                          (["kg", "query", "RETURN $n AS n", "--param", "n=NaN"], "--param n: NaN is not a number a query can use")):
        assert main(argv) == 2, argv
        assert message in one_error_line(capsys), argv
    assert main(["kg", "query", "RETURN $n AS n, 0.0 / 0.0 AS nan, 1e308 * 10 AS inf", "--param", f"n={2**63 - 1}", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} is not JSON")) == [{"n": 2**63 - 1, "nan": None, "inf": None}]


def test_a_damaged_alignment_model_or_checkpoint_is_named(tmp_path, capsys):
    import torch
    import yaml
    from PIL import Image

    from alignment.config import load_config
    from alignment.model import CONFIG_NAME
    from alignment.train import _resume
    from medkg.api.align import config_path

    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(load_config(config_path("clip")).as_dict()))
    damaged = run / "model" / CONFIG_NAME
    damaged.write_bytes(b"")  # zero bytes: a copy that stopped at once
    Image.new("L", (32, 32)).save(tmp_path / "x.png")
    assert main(["explain", str(tmp_path / "x.png"), "--checkpoint", str(run), "--out", str(tmp_path / "maps"), "--device", "cpu"]) == 2
    assert f"model damaged: {damaged}" in one_error_line(capsys)
    assert main(["evaluate", "--checkpoint", str(run), "--dataset", "csv", "--root", str(tmp_path / "x.csv"), "--out", str(tmp_path / "e"),
                 "--data-dir", str(tmp_path), "--device", "cpu"]) == 2
    assert f"model damaged: {damaged}" in one_error_line(capsys)

    (run / "checkpoint.pt").write_bytes(b"")

    class Runtime:
        device = torch.device("cpu")

    with pytest.raises(Exception, match="checkpoint.pt is damaged .*delete it to start over") as caught:
        _resume(run, None, "", Runtime(), None, None, None, None)
    assert isinstance(caught.value, __import__("kg.errors").errors.DamagedFileError)


EXTRACT_CLI = """
import sys
from medkg.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_during_a_parallel_extraction_stops_with_one_line(open_kg_dir, data_dir, concept_index, medkg_home, tmp_path):
    """Ctrl-C signals the terminal's whole process group: the pool's workers must not print tracebacks."""
    out = tmp_path / "mentions.jsonl"
    env = {**os.environ, "MEDKG_HOME": str(medkg_home), "MEDKG_DATA_DIR": str(data_dir)}
    process = subprocess.Popen(
        [sys.executable, "-c", EXTRACT_CLI, "extract", "run", str(data_dir / "iu-xray" / "NLMCXR_reports.tgz"), "--kg", str(open_kg_dir),
         "--out", str(out), "--workers", "2"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        seen = b""
        while b"extracting: " not in seen or b" 0 reports" in seen.rsplit(b"\r", 1)[-1]:  # the pool is at work
            chunk = process.stderr.read1(4096)
            assert chunk, f"extraction ended before Ctrl-C: {seen.decode()[-2000:]}"
            seen += chunk
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does in a terminal
        err = seen + process.stderr.read()
        process.wait(60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        process.stderr.close()
    text = err.decode()
    assert process.returncode == 130 and "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
    assert text.rstrip().endswith("medkg: interrupted")
    assert not out.exists()  # nothing half-written in its place


# Case 10: one base class for user errors; a bug keeps its traceback


def test_a_library_bug_keeps_its_traceback_and_user_errors_are_one_line(graph, capsys, monkeypatch):
    from medkg.api import kg as kg_api

    assert main(["kg", "neighbors", "C404"]) == 2
    assert "no concept with id 'C404'" in one_error_line(capsys)

    def bug(*args, **kwargs):
        raise ValueError("an invariant the code broke")

    monkeypatch.setattr(kg_api, "counts", bug)
    with pytest.raises(ValueError, match="an invariant the code broke"):  # not turned into "medkg: error: ..."
        main(["kg", "info"])

    def unreadable(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/srv/graph")

    monkeypatch.setattr(kg_api, "counts", unreadable)  # the system about a path: the user's to fix
    assert main(["kg", "info"]) == 2
    assert one_error_line(capsys) == "medkg: error: Permission denied: /srv/graph"

    def unnamed(*args, **kwargs):
        raise PermissionError("raised by code, about no path")

    monkeypatch.setattr(kg_api, "counts", unnamed)
    with pytest.raises(PermissionError):
        main(["kg", "info"])


def test_every_error_class_of_the_library_is_a_medkg_error():
    from alignment.data.records import DatasetError
    from alignment.explain import UnknownEntityError
    from alignment.settings import ConfigError
    from extract.lexicon import LexiconError
    from graphdb.readonly import FileAccessError, ReadOnlyError
    from graphdb.store import ConceptNotFoundError, CredentialsError, GraphDBError, NoEmbeddingsError
    from kg.errors import MedkgError
    from kg.problems import MalformedInputError

    for kind in (DatasetError, UnknownEntityError, ConfigError, LexiconError, ReadOnlyError, FileAccessError, ConceptNotFoundError,
                 CredentialsError, GraphDBError, NoEmbeddingsError, IncompleteGraphError, MalformedInputError):
        assert issubclass(kind, MedkgError), kind


# Friction: -v anywhere, defaults that do not depend on the working directory, every problem in a file


def test_verbose_is_accepted_before_and_after_the_command():
    from medkg.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["-v", "kg", "info"]).verbose
    assert parser.parse_args(["kg", "info", "-v"]).verbose
    assert parser.parse_args(["kg", "load", "DIR", "--verbose"]).verbose
    assert not parser.parse_args(["kg", "info"]).verbose


def test_defaults_resolve_against_the_project_and_a_plain_rrf_directory_loads_anywhere(env, monkeypatch, capsys):
    from kg.paths import default_data_dir

    out = env / "umls-kg"
    assert main(["kg", "build", "--source", "umls", "--umls-dir", str(META), "--out", str(out), "-q"]) == 0
    monkeypatch.delenv("MEDKG_DATA_DIR")
    monkeypatch.chdir(env)  # outside the repository: no ../shared/data here
    assert default_data_dir() == ROOT.parent / "shared" / "data"
    assert main(["kg", "load", str(out), "-q", "--graph", f"embedded://{env / 'db'}"]) == 0  # the packaged SemGroups.txt
    assert main(["kg", "load", str(out), "-q", "--graph", f"embedded://{env / 'db'}", "--data-dir", str(env)]) == 2
    assert f"semantic groups file is missing: {env / 'vocab' / 'umls' / 'SemGroups.txt'}" in one_error_line(capsys)


def test_every_build_problem_is_written_to_a_file_named_on_the_terminal(env, capsys):
    out = env / "umls-kg"
    assert main(["kg", "build", "--source", "umls", "--umls-dir", str(META), "--out", str(out), "-q"]) == 0
    err = capsys.readouterr().err
    assert f"skipped input: 4 problems: 2 column count, 1 encoding, 1 dangling relation (all 4 in {out / 'problems.txt'}" in err
    lines = (out / "problems.txt").read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith(f"{META / 'MRCONSO.RRF'}:9: column count")
