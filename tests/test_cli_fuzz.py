"""CLI fuzz: random argument lists for every command, built from real keys with bad values, unknown keys, odd
characters, empty strings and huge numbers. Every one must end with exit code 0 or 2, a 2 with exactly one line on
stderr, and never a traceback.

The commands run in-process through their ``main(argv)``. What would start real work once the input is accepted
(training, playing a run, stepping envs) is stubbed to return 0, so the fuzz checks the input handling only; the
directories a run would create are made under a temporary working directory.
"""

import contextlib
import io
import random

import pytest

from herjax import config as config_lib

N_CASES = 500
BAD_VALUES = [
    "", " ", "-1", "0", "-0", "1e999", "-1e999", "nan", "inf", "1" * 40, "9" * 400, "abc", "x" * 5000, "[1,2",
    "[]", "[[]]", "{}", "{a: 1}", "null", "None", "true", "false", "1.5", "0x10", "1_000", "=", "a=b", "'", '"',
    "\\", "%s", "${oc.env:NO_SUCH_VAR}", "${", "}", "\u00e9", "\U0001F600", "\x00", "\t", "\n", "fetch_push",
    "ddpg_her", "ppo", "mjx", "mujoco", "/proc/herjax-x", "/dev/null", "..", "best", "latest", "x.mp4", "x.gif",
]
UNKNOWN_KEYS = ["", "x", "ddpg", "ddpg.", ".", "ddpg.nope", "ppo.batch_size", "Env", "env ", " env", "+env",
                "++env", "~env", "-h", "--", "--out", "--metric", "ENV", "\u00e9", "a.b.c"]


class _WouldRun(Exception):
    """Stands in for the real work of an accepted command."""


def _stub(*args, **kwargs):
    raise _WouldRun


def _cases(keys, seed):
    rng = random.Random(seed)
    for _ in range(N_CASES):
        argv = []
        for _ in range(rng.randint(0, 4)):
            form = rng.random()
            key = rng.choice(keys) if form < 0.8 else rng.choice(UNKNOWN_KEYS)
            value = rng.choice(BAD_VALUES) if rng.random() < 0.85 else str(rng.randint(-3, 10**rng.randint(0, 12)))
            argv.append(f"{key}={value}" if rng.random() < 0.95 else rng.choice([key, value]))
        yield argv


def _run(main, argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except _WouldRun:
            code = 0
        except SystemExit as e:  # argparse's --help
            code = e.code
    return code, out.getvalue(), err.getvalue()


def _fuzz(main, keys, seed):
    failures = []
    for argv in _cases(keys, seed):
        code, out, err = _run(main, argv)
        lines = err.strip().splitlines()
        if code not in (0, 2) or "Traceback" in err or (code == 2 and len(lines) != 1):
            failures.append((argv, code, err[-500:]))
    assert not failures, f"{len(failures)} of {N_CASES} cases failed, e.g. {failures[:3]}"


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_train_cli_fuzz(in_tmp, monkeypatch):
    from herjax import train as train_mod

    monkeypatch.setattr(train_mod, "_run", _stub)
    _fuzz(train_mod.main, config_lib.keys() + ["resume"], seed=1)


def test_play_cli_fuzz(in_tmp, monkeypatch):
    from herjax import play as play_lib

    monkeypatch.setattr(play_lib, "play", _stub)
    _fuzz(play_lib.main, ["run", "episodes", "checkpoint", "video", "seed", "width", "height", "backend"], seed=2)


def test_plot_cli_fuzz(in_tmp, monkeypatch):
    from herjax import plot as plot_lib

    monkeypatch.setattr(plot_lib, "plot", _stub)
    _fuzz(plot_lib.main, ["--out", "--metric", "runs", "-h"], seed=3)


def test_env_demo_cli_fuzz(in_tmp, monkeypatch):
    from herjax import envs
    from herjax.envs import __main__ as demo

    monkeypatch.setattr(envs, "vec", _stub)
    _fuzz(demo.main, ["env", "num_envs", "episodes", "backend", "seed"], seed=4)


def test_demos_cli_fuzz(in_tmp, monkeypatch):
    import dataclasses

    from herjax import demos as demos_lib

    monkeypatch.setattr(demos_lib, "record", _stub)
    _fuzz(demos_lib.main, [f.name for f in dataclasses.fields(demos_lib.DemoConfig)], seed=5)
