"""``benchmarks/time_to_success.py --add-seeds``: a later sitting adds seeds to a stored entry (the summary over
all its runs, each sitting's machine kept), and refuses, before any run, an entry it cannot add to."""

import json

import pytest

from benchmarks import time_to_success as tts

ARGS = ["--envs", "fetch_reach", "--max-steps", "20000", "--max-wall-s", "60", "--label", "t"]


def fake_run(env, seed, threshold, max_steps, max_wall_s, overrides, original_episodes=0):
    steps = {0: 4000, 1: 8000, 2: 6000}[seed]
    return {"seed": seed, "reached": True, "env_steps": steps, "wall_s": steps / 1000, "epochs_run": 1,
            "env_steps_run": steps, "best_test_success": 1.0}


@pytest.fixture
def runs(monkeypatch):
    monkeypatch.setattr(tts, "run_one", fake_run)


def test_add_seeds_extends_the_entry(tmp_path, runs):
    out = str(tmp_path / "r.json")
    assert tts.main([*ARGS, "--seeds", "0", "--note", "first", "--out", out]) == 0
    assert tts.main([*ARGS, "--seeds", "1", "2", "--add-seeds", "--out", out]) == 0
    entry = json.load(open(out))["results"]["fetch_reach@t"]
    assert [r["seed"] for r in entry["runs"]] == [0, 1, 2]
    assert entry["summary"]["reached"] == "3/3" and entry["summary"]["median_env_steps"] == 6000
    assert [s["seeds"] for s in entry["sittings"]] == [[0], [1, 2]]
    assert entry["note"] == "first"


def test_add_seeds_refuses_what_it_cannot_add_to(tmp_path, runs, capsys):
    out = str(tmp_path / "r.json")
    assert tts.main([*ARGS, "--seeds", "1", "--add-seeds", "--out", out]) == 2
    assert "no entry 'fetch_reach@t'" in capsys.readouterr().err
    assert tts.main([*ARGS, "--seeds", "0", "--out", out]) == 0
    before = open(out).read()
    other = [a if a != "60" else "90" for a in ARGS]
    assert tts.main([*other, "--seeds", "1", "--add-seeds", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "another budget" in err and "'max_wall_s_per_seed': 60.0" in err and "90.0" in err
    assert open(out).read() == before  # nothing lost
