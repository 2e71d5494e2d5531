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
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
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
