"""Slide's puck: the original cylinder (the C engine's) or the 16-sided prism MJX needs. What the prism changes.

    python -m benchmarks.slide_puck --runs prism:RUN_DIR cylinder:RUN_DIR ...

Its parts, every model in a process of its own (``herjax.envs.model.load_model`` is cached per process):

* ``scripted``: the scripted push (``herjax.envs.scripted.push_policy``) from the original FetchSlide-v4's first
  100 initial states, on herjax's C engine with each puck: the puck's path over 25 steps against the original's
  (median and 90th percentile of each episode's largest distance) and both success rates
  (``tests/test_parity.py``'s ``scripted_against_original``).
* ``replay``: each run's best checkpoint, ``--episodes`` deterministic episodes (``herjax.play``, seed 20000) on
  the C engine with the prism, with the cylinder, and with no model edit at all (``weld=False``,
  ``primitive_collisions=False``: only the sensors added), and in the original FetchSlide-v4 (seeds 10000, ...).
  ``LABEL:RUN_DIR`` names the puck the run trained on.
* ``contacts`` (``--contacts``, on its own, into ``slide_puck_contacts_cpu.json``): which of the puck's contacts
  carries the prism's path gap. The scripted push as above, on the C engine with the puck's two contact sides
  split: a cylinder or a prism against the table and the floor, and a cylinder or a prism against the gripper's
  boxes (the original puck geom kept for mass and site only), each by contact bits (cylinder on both sides is the
  control); and on herjax's MJX engine with the cylinder (its cylinder-box test, ``herjax.envs.mjx_cylinder_box``)
  and with the prism it used before. Then the MJX engine's env steps/s with each puck, as ``speed`` measures the C
  engine's.
* ``speed``: env steps/s of herjax's C engine with each puck (``benchmarks.env_throughput.measure``: ``--speed-envs``
  envs, 200 steps of random actions in one jitted scan, the median of 3 calls after a warm-up), the two models
  alternating over ``--speed-repeats`` processes each; the figure is ``cylinder / prism`` of the medians, since only
  the ratio means anything on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.machine import describe, in_child, report, save  # noqa: E402

MODELS = {
    "prism": {"convex_puck": True},
    "cylinder": {"convex_puck": False},
    "no_edits": {"convex_puck": False, "weld": False, "primitive_collisions": False},
}
# The ``contacts`` part: the puck's shape against the table (and floor), and against the gripper.
SPLITS = {
    "cylinder_table_cylinder_gripper": ("cylinder", "cylinder"),  # the control: the split alone
    "cylinder_table_prism_gripper": ("cylinder", "prism"),
    "prism_table_cylinder_gripper": ("prism", "cylinder"),
}
DEFAULT_OUT = os.path.join(HERE, "results", "slide_puck_cpu.json")
CONTACTS_OUT = os.path.join(HERE, "results", "slide_puck_contacts_cpu.json")
# Contact bits of the split model: the table side of the puck and the table/floor share bit 2, the gripper side
# and the gripper's collision boxes bit 4, and the table, floor and gripper keep bit 1 for one another.
_TABLE_BITS, _GRIPPER_BITS = 2, 4
_TABLE_GEOMS = ("table0", "floor0")
_GRIPPER_GEOMS = ("robot0:wrist_roll_link:collision", "robot0:gripper_link:collision",
                  "robot0:r_gripper_finger_link", "robot0:l_gripper_finger_link")


def _split_puck(table_shape: str, gripper_shape: str):
    """A stand-in for ``model._puck_as_convex_mesh`` that gives the puck one contact geom against the table and
    floor and another against the gripper, each the cylinder or herjax's prism (its mass and inertia kept)."""
    import mujoco

    from herjax.envs import model as model_lib

    prism = model_lib._puck_as_convex_mesh

    def split(spec, original) -> None:
        prism(spec, original)  # the prism mesh, the kept inertia, the fingers' margins 0
        puck = spec.geom("object0")
        radius, half_height = (float(x) for x in original.geom("object0").size[:2])
        body = spec.body("object0")
        for name, shape, bits in (("table_side", table_shape, _TABLE_BITS),
                                  ("gripper_side", gripper_shape, _GRIPPER_BITS)):
            g = body.add_geom(name=f"object0:{name}", friction=puck.friction, solref=puck.solref,
                              solimp=puck.solimp, condim=puck.condim, mass=0.0, density=0.0, group=3,
                              contype=bits, conaffinity=bits, margin=0.0)
            if shape == "cylinder":
                g.type, g.size = mujoco.mjtGeom.mjGEOM_CYLINDER, [radius, half_height, 0.0]
            else:
                g.type, g.meshname = mujoco.mjtGeom.mjGEOM_MESH, "object0:puck"
        puck.contype = puck.conaffinity = 0
        for name in _TABLE_GEOMS:
            spec.geom(name).contype = spec.geom(name).conaffinity = 1 | _TABLE_BITS
        for name in _GRIPPER_GEOMS:
            spec.geom(name).contype = spec.geom(name).conaffinity = 1 | _GRIPPER_BITS
        if gripper_shape == "cylinder":  # the original's finger margins, as the C engine keeps them
            for name in model_lib.FINGER_JOINTS:
                link = name.replace("_joint", "_link")
                spec.geom(link).margin = float(original.geom(link).margin[0])

    return split


def _use_model(model: str) -> None:
    """Makes every Fetch env of this process load its model with ``MODELS[model]``."""
    import functools

    from herjax.envs import model as model_lib

    load = model_lib.load_model.__wrapped__
    if model in SPLITS:
        model_lib._puck_as_convex_mesh = _split_puck(*SPLITS[model])
        edits = MODELS["prism"]
    else:
        edits = MODELS[model]
    model_lib.load_model = functools.lru_cache(maxsize=None)(lambda task, **kw: load(task, **{**kw, **edits}))


def child_scripted(model: str, backend: str = "mujoco") -> None:
    import numpy as np

    _use_model(model)
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
    import test_parity

    ours, theirs, dev = test_parity.scripted_against_original("slide", backend)
    report({"herjax_success": round(ours, 4), "original_success": round(theirs, 4),
            "path_deviation_cm_median": round(float(np.median(dev)) * 100, 3),
            "path_deviation_cm_p90": round(float(np.percentile(dev, 90)) * 100, 3)})


def child_replay(model: str, run_dir: str, episodes: int) -> None:
    from herjax.play import play

    if model == "original":
        from benchmarks.time_to_success import original_success

        report({"success": original_success("fetch_slide", run_dir, episodes)})
        return
    _use_model(model)
    result = play(run_dir, episodes=episodes, backend="mujoco", seed=20_000, log=None)
    report({"success": round(result.success_rate, 4), "checkpoint": result.checkpoint})


def child_speed(model: str, num_envs: int, backend: str = "mujoco") -> None:
    from benchmarks.env_throughput import measure

    _use_model(model)
    rate = measure("slide", backend, num_envs, steps=200, repeats=3)["env_steps_per_s"]
    report({"env_steps_per_s": round(rate, 1)})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="*", default=[], metavar="LABEL:RUN_DIR",
                        help="Slide runs to replay, each with the puck it trained on (e.g. cylinder:/tmp/run)")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--speed-envs", type=int, default=16)
    parser.add_argument("--speed-repeats", type=int, default=3)
    parser.add_argument("--contacts", action="store_true",
                        help="run only the contacts part, into slide_puck_contacts_cpu.json (or --out)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, model, *rest = args.child
        if kind == "scripted":
            child_scripted(model, *rest)
        elif kind == "speed":
            child_speed(model, int(rest[0]), *rest[1:])
        else:
            child_replay(model, rest[0], int(rest[1]))
        return 0
    runs = []
    for item in args.runs:
        label, sep, run_dir = item.partition(":")
        if label not in ("prism", "cylinder") or not sep or not os.path.isdir(run_dir):
            print(f"bad value {item!r} for --runs: expected LABEL:RUN_DIR, LABEL prism or cylinder (the puck it "
                  "trained on) and RUN_DIR an existing run directory", file=sys.stderr)
            return 2
        runs.append((label, run_dir))
    module = "benchmarks.slide_puck"
    if args.contacts:
        return contacts(module, args.out or CONTACTS_OUT, args.speed_envs, args.speed_repeats)
    scripted = {}
    for model in ("cylinder", "prism"):
        scripted[model] = in_child(module, "--child", "scripted", model)
        print(f"scripted push, {model}: {scripted[model]}", flush=True)
    speed_row = _speed(module, "mujoco", args.speed_envs, args.speed_repeats)
    print(f"C engine speed: {speed_row}", flush=True)
    replays = []
    for label, run_dir in runs:
        row = {"trained_on": label, "run_dir": run_dir}
        for model in (*MODELS, "original"):
            row[model] = in_child(module, "--child", "replay", model, run_dir, str(args.episodes))["success"]
        row["original_over_trained_on"] = round(row["original"] / max(row[label], 1e-9), 3)
        print(f"replay {label} {run_dir}: {row}", flush=True)
        replays.append(row)
    save(args.out or DEFAULT_OUT, {
        "machine": describe(),
        "method": __doc__.strip(),
        "scripted_push_from_original_states": scripted,
        "c_engine_speed": speed_row,
        "replay_episodes": args.episodes,
        "replays": replays,
    })
    return 0


def _speed(module: str, backend: str, num_envs: int, repeats: int) -> dict:
    """``backend``'s env steps/s with each puck, the two alternating over ``repeats`` processes each, and
    ``cylinder / prism`` of their medians (the ``speed`` part)."""
    speed = {"prism": [], "cylinder": []}
    for _ in range(repeats):
        for model in speed:
            speed[model].append(in_child(module, "--child", "speed", model, str(num_envs), backend)["env_steps_per_s"])
    median = {model: statistics.median(v) for model, v in speed.items()}
    return {"num_envs": num_envs, "env_steps_per_s": speed,
            "cylinder_over_prism": round(median["cylinder"] / median["prism"], 3)}


def contacts(module: str, out: str, speed_envs: int, speed_repeats: int) -> int:
    """The ``contacts`` part (module docstring)."""
    rows = {}
    for model, backend in (("cylinder", "mujoco"), ("prism", "mujoco"), *((m, "mujoco") for m in SPLITS),
                           ("cylinder", "mjx"), ("prism", "mjx")):
        label = f"{backend}:{model}"
        rows[label] = in_child(module, "--child", "scripted", model, backend)
        print(f"scripted push, {label}: {rows[label]}", flush=True)
    speed_row = _speed(module, "mjx", speed_envs, speed_repeats)
    print(f"MJX engine speed: {speed_row}", flush=True)
    save(out, {"machine": describe(), "method": __doc__.strip(), "scripted_push_from_original_states": rows,
               "mjx_engine_speed": speed_row})
    return 0


if __name__ == "__main__":
    sys.exit(main())
