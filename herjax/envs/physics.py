"""One pure physics step behind several engines.

Every engine takes and returns the same ``PhysState`` pytree, so nothing above this module knows which engine
is stepping. A step is: ``n_substeps`` MuJoCo steps with the given controls and mocap pose, then the locked
qpos entries set to 0 (the blocked gripper), then a forward pass so that ``sensordata`` describes the new state.

Engines:
  * ``mjx``: MuJoCo MJX, JAX implementation; the accelerator path.
  * ``mujoco``: C MuJoCo, batched and multithreaded with ``mujoco.rollout``, reached from jitted code through
    a host callback (``buffer_callback`` on the CPU backend, ``jax.pure_callback`` elsewhere); the CPU default.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import functools
import os
import threading
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

try:  # jax >= 0.7; older jax takes the pure_callback path below
    from jax.experimental.buffer_callback import buffer_callback
except ImportError:  # pragma: no cover
    buffer_callback = None

from herjax import _lapack

BACKENDS = ("mjx", "mujoco")


class PhysState(NamedTuple):
    """The physical state of one env; every leaf has JAX's default float dtype.

    Attributes:
        qpos: ``[nq]``.
        qvel: ``[nv]``.
        ctrl: ``[nu]`` actuator controls in force.
        mocap_pos: ``[nmocap, 3]``.
        mocap_quat: ``[nmocap, 4]``.
        qacc_warmstart: ``[nv]`` the constraint solver's warm start, carried as MuJoCo carries it.
        sensordata: ``[nsensordata]`` sensors of the current state.
    """

    qpos: jax.Array
    qvel: jax.Array
    ctrl: jax.Array
    mocap_pos: jax.Array
    mocap_quat: jax.Array
    qacc_warmstart: jax.Array
    sensordata: jax.Array


class Physics(NamedTuple):
    """Pure functions of one env's ``PhysState``; both work under ``jax.jit`` and ``jax.vmap``.

    Attributes:
        forward: recomputes ``sensordata`` for the state's qpos/qvel (the reset path).
        step: advances ``n_substeps``, applies the qpos lock, then runs forward.
    """

    forward: Callable[[PhysState], PhysState]
    step: Callable[[PhysState], PhysState]
    backend: str


def default_backend() -> str:
    """``mjx`` on a GPU or TPU, ``mujoco`` on the CPU."""
    return "mjx" if jax.default_backend() in ("gpu", "cuda", "rocm", "tpu") else "mujoco"


def resolve_backend(backend: str) -> str:
    if backend == "auto":
        return default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid backends: auto, {', '.join(BACKENDS)}")
    return backend


def make_physics(
    m: mujoco.MjModel, backend: str, *, n_substeps: int, locked_qpos: tuple[int, ...] = ()
) -> Physics:
    """Builds the pure physics functions of ``m`` on ``backend``.

    Args:
        m: the (edited) MjModel.
        backend: ``mjx``, ``mujoco`` or ``auto``.
        n_substeps: MuJoCo steps per env step.
        locked_qpos: qpos addresses set to 0 after the substeps, before forward (gymnasium-robotics'
            ``_step_callback`` for a blocked gripper).
    """
    backend = resolve_backend(backend)
    if backend == "mjx":
        return _make_mjx(m, n_substeps, locked_qpos)
    return _make_mujoco(m, n_substeps, locked_qpos)


def _lock(qpos: jax.Array, locked_qpos: tuple[int, ...]) -> jax.Array:
    if not locked_qpos:
        return qpos
    return qpos.at[jnp.asarray(locked_qpos)].set(0.0)


# The MJX engine's solver budget. The original asks Newton for tolerance 1e-8 within 100 iterations; C MuJoCo
# meets it in 1.3 iterations on average (at most 14 seen in scripted episodes), but float32 MJX never reaches
# 1e-8, and under vmap every env then runs all 100. The C engine keeps the original settings.
MJX_SOLVER = {"iterations": 10, "ls_iterations": 10, "tolerance": 1e-6}
# Contact points as C MuJoCo places them (``herjax.envs.mjx_contacts``); False leaves MJX's own (for comparisons).
MJX_C_CONTACTS = True
# On the CPU, MJX's Cholesky factorisations one env at a time under vmap (``herjax._lapack``); False leaves jaxlib's
# batched ones, which can deadlock (for comparisons: ``benchmarks.env_throughput --lapack-ab``).
MJX_SERIAL_LAPACK = True


def _make_mjx(m: mujoco.MjModel, n_substeps: int, locked_qpos: tuple[int, ...]) -> Physics:
    from mujoco import mjx

    # MJX's own pipeline plus C MuJoCo's J-dot-v term of the mocap weld, which MJX 3.17 leaves out, and contact
    # points as C MuJoCo places them (each once; box-box ones within the margin too, and midway between the surfaces).
    from herjax.envs import mjx_contacts, mjx_jdotv

    m = copy.deepcopy(m)
    for name, value in MJX_SOLVER.items():
        setattr(m.opt, name, value)
    own_contacts = mjx_contacts.unique_midpoint_contacts if MJX_C_CONTACTS else contextlib.nullcontext
    with own_contacts():  # MJX sizes its contacts from its collision table, which lacks Slide's cylinder-box
        mx = mjx.put_model(m)
        template = mjx.make_data(mx)

    def to_data(s: PhysState):
        return template.replace(
            qpos=s.qpos, qvel=s.qvel, ctrl=s.ctrl, mocap_pos=s.mocap_pos, mocap_quat=s.mocap_quat,
            qacc_warmstart=s.qacc_warmstart,
        )

    def from_data(d, s: PhysState) -> PhysState:
        return s._replace(qpos=d.qpos, qvel=d.qvel, qacc_warmstart=d.qacc_warmstart, sensordata=d.sensordata)

    @contextlib.contextmanager
    def contacts():
        # and, on the CPU, Cholesky factorisations one env at a time (herjax._lapack: batched ones can deadlock)
        with own_contacts(), (_lapack.serial_cholesky() if MJX_SERIAL_LAPACK else contextlib.nullcontext()):
            yield

    def forward(s: PhysState) -> PhysState:
        with contacts():
            return from_data(mjx_jdotv.forward(mx, to_data(s)), s)

    def step(s: PhysState) -> PhysState:
        with contacts():
            d = jax.lax.fori_loop(0, n_substeps, lambda _, d: mjx_jdotv.step(mx, d), to_data(s))
            d = mjx_jdotv.forward(mx, d.replace(qpos=_lock(d.qpos, locked_qpos)))
        return from_data(d, s)

    return Physics(forward=forward, step=step, backend="mjx")


def _host_state(qpos, qvel, warm, sensordata) -> dict:
    """What ``_CEngine.forward`` and ``step`` return: float64 arrays of their own, by the names of ``PhysState``."""
    return {"qpos": np.array(qpos, np.float64), "qvel": np.array(qvel, np.float64),
            "qacc_warmstart": np.array(warm, np.float64), "sensordata": sensordata}


def _guard_reset(time: np.ndarray, timestep: float) -> np.ndarray:
    """``[n]`` bool: which envs MuJoCo's own guard reset during a rollout, from the times ``[n, nstep]`` after each
    substep of a rollout started at time 0.

    ``mj_step`` checks positions, velocities and accelerations, and where one is non-finite or huge it warns and
    resets ``mjData`` to the model's ``qpos0`` (time 0), and the step goes on from there. That state is finite, so
    ``wrappers.finite`` would let it through; its time, which went back, gives it away. The C engine hands such an
    env back as NaN, so that the rollouts reset it to a fresh Fetch reset and count it, as on MJX.
    """
    expected = timestep * np.arange(1, time.shape[1] + 1)
    return np.any(np.abs(time - expected) > timestep / 2, axis=1)


def _locked_sensor_adr(m: mujoco.MjModel, locked: np.ndarray) -> np.ndarray | None:
    """``sensordata`` addresses of the ``jointpos`` sensors of locked qpos entries, or None where a sensor's value
    could depend on the lock some other way (then ``_CEngine.step`` takes its sensors in a forward pass after it).

    The sensors of the state before the lock stand for those after it when every sensor is of the position or
    velocity stage (no contact or constraint force, no acceleration) and, beside the locked joints' own
    ``jointpos``, reads a joint or a frame that no locked joint moves. The lock changes only qpos, so velocities
    are untouched; it does move the locked bodies' mass, so frame velocities, which MuJoCo carries about each
    tree's centre of mass, can differ in the last bits (tests/test_envs.py bounds it).
    """
    S, O = mujoco.mjtSensor, mujoco.mjtObj
    locked_adr = set(locked.tolist())
    locked_joints = {j for j in range(m.njnt) if int(m.jnt_qposadr[j]) in locked_adr}
    locked_bodies = {int(m.jnt_bodyid[j]) for j in locked_joints}
    moved = np.zeros(m.nbody, bool)  # bodies a locked joint moves: the joint's body and its subtree
    for b in range(1, m.nbody):  # a parent's index is below its child's
        moved[b] = moved[m.body_parentid[b]] or b in locked_bodies
    frame = {int(t) for t in (S.mjSENS_FRAMEPOS, S.mjSENS_FRAMEQUAT, S.mjSENS_FRAMELINVEL, S.mjSENS_FRAMEANGVEL,
                              S.mjSENS_FRAMEXAXIS, S.mjSENS_FRAMEYAXIS, S.mjSENS_FRAMEZAXIS)}
    owner = {int(O.mjOBJ_BODY): lambda i: i, int(O.mjOBJ_XBODY): lambda i: i,
             int(O.mjOBJ_SITE): lambda i: m.site_bodyid[i], int(O.mjOBJ_GEOM): lambda i: m.geom_bodyid[i]}

    def body_of(objtype, objid):  # the body a sensor's object (or reference) sits on; 0 (the world) for none
        if objid < 0:
            return 0
        return owner[int(objtype)](objid) if int(objtype) in owner else None

    adr = []
    for i in range(m.nsensor):
        stype, obj = int(m.sensor_type[i]), int(m.sensor_objid[i])
        if stype in (int(S.mjSENS_JOINTPOS), int(S.mjSENS_JOINTVEL)):
            if stype == int(S.mjSENS_JOINTPOS) and obj in locked_joints:
                adr.append(m.sensor_adr[i])
            continue
        bodies = (body_of(m.sensor_objtype[i], obj), body_of(m.sensor_reftype[i], m.sensor_refid[i]))
        if stype not in frame or any(b is None or moved[b] for b in bodies):
            return None
    return np.asarray(adr, np.int64)


@functools.lru_cache(maxsize=None)
def _c_worker() -> concurrent.futures.ThreadPoolExecutor:
    """One host thread with a 64 MiB stack for the C engine.

    XLA runs host callbacks on threads whose stacks are too small for MuJoCo's collision code (seen as a
    segfault in ``mj_forward`` on the Push model), so callbacks hand their work to this thread.
    """
    previous = threading.stack_size(64 * 1024 * 1024)
    try:
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="herjax-mujoco")
        pool.submit(lambda: None).result()  # threads are made lazily: make it now, under the big stack size
    finally:
        threading.stack_size(previous)
    return pool


class _CEngine:
    """Host side of the ``mujoco`` backend: float64 C MuJoCo over a batch of states."""

    def __init__(self, m: mujoco.MjModel, n_substeps: int, locked_qpos: tuple[int, ...]):
        from mujoco import rollout

        self.m = m
        self.n_substeps = n_substeps
        self.locked = np.asarray(locked_qpos, dtype=np.int64)
        self.nthread = max(1, os.cpu_count() or 1)
        self._rollout_mod = rollout
        self._local = threading.local()
        self.state_spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        self.control_spec = (
            mujoco.mjtState.mjSTATE_CTRL | mujoco.mjtState.mjSTATE_MOCAP_POS | mujoco.mjtState.mjSTATE_MOCAP_QUAT
        )
        self.nstate = mujoco.mj_stateSize(m, self.state_spec)
        self.ncontrol = mujoco.mj_stateSize(m, self.control_spec)
        self.locked_sensors = _locked_sensor_adr(m, self.locked)

    def _datas(self, n: int) -> list[mujoco.MjData]:
        datas = getattr(self._local, "datas", None)
        if datas is None or len(datas) < n:
            datas = [mujoco.MjData(self.m) for _ in range(n)]
            self._local.datas = datas
        return datas[:n]

    def _state(self, qpos, qvel):
        n, m = qpos.shape[0], self.m
        state = np.zeros((n, self.nstate))
        state[:, 1 : 1 + m.nq] = qpos  # layout of mjSTATE_FULLPHYSICS: time, qpos, qvel, (act, ...)
        state[:, 1 + m.nq : 1 + m.nq + m.nv] = qvel
        return state

    def _control(self, ctrl, mocap_pos, mocap_quat):
        n = ctrl.shape[0]
        return np.concatenate([ctrl, mocap_pos.reshape(n, -1), mocap_quat.reshape(n, -1)], axis=1)[:, None, :]

    def _rollout(self, state0, control, warm, nstep):
        datas = self._datas(max(1, min(self.nthread, state0.shape[0])))
        return self._rollout_mod.rollout(
            self.m, datas, state0, control, control_spec=self.control_spec, nstep=nstep, initial_warmstart=warm,
            persistent_pool=True,
        )

    def forward(self, qpos, qvel, ctrl, mocap_pos, mocap_quat, warm):
        """Sensors of the given states, computed in C on all threads.

        ``mj_step`` runs ``mj_forward`` before it integrates, and ``rollout`` records the sensors of that pass:
        the first substep's sensors are those of the state it starts from. So one substep from each state, its
        result dropped, gives what a per-env ``mj_forward`` loop in Python gave, bit for bit, without the loop.
        ``qacc_warmstart`` passes through, as ``mj_forward`` leaves it.
        """
        _, sensordata = self._rollout(self._state(qpos, qvel), self._control(ctrl, mocap_pos, mocap_quat), warm, 1)
        return _host_state(qpos, qvel, warm, sensordata[:, 0])

    def step(self, qpos, qvel, ctrl, mocap_pos, mocap_quat, warm):
        """``n_substeps``, the lock, then the sensors of the new state.

        Where the sensors allow (``_locked_sensor_adr``), one rollout of ``n_substeps + 1`` substeps does it all:
        the extra substep's first pass gives the sensors of the state after ``n_substeps``, whose own result is
        dropped. That saves a second ``rollout`` call, whose fixed cost (~0.25 ms at 16 envs on 2 cores: the
        per-env state setup on the pool) was a tenth of an env step. The lock sets the fingers' qpos after the
        pass, so their ``jointpos`` sensors are set to the same 0; no other sensor reads a locked joint.
        """
        nq, nv = self.m.nq, self.m.nv
        control = self._control(ctrl, mocap_pos, mocap_quat)
        fused = self.locked_sensors is not None
        state, sensordata = self._rollout(self._state(qpos, qvel), control, warm, self.n_substeps + fused)
        final = state[:, self.n_substeps - 1]
        qpos1 = final[:, 1 : 1 + nq].copy()
        qvel1 = final[:, 1 + nq : 1 + nq + nv]
        if self.locked.size:
            qpos1[:, self.locked] = 0.0
        if not fused:
            # rollout does not return the last substep's warm start; the incoming one is the nearest we have.
            out = self.forward(qpos1, qvel1, ctrl, mocap_pos, mocap_quat, warm)
        else:
            sensors = sensordata[:, -1].copy()
            sensors[:, self.locked_sensors] = 0.0
            out = _host_state(qpos1, qvel1, warm, sensors)
        guarded = _guard_reset(state[:, :, 0], self.m.opt.timestep)
        for k in ("qpos", "qvel", "sensordata"):
            out[k][guarded] = np.nan
        return out


def _make_mujoco(m: mujoco.MjModel, n_substeps: int, locked_qpos: tuple[int, ...]) -> Physics:
    engine = _CEngine(m, n_substeps, locked_qpos)
    # The callback takes one array and returns one: JAX puts every argument of a host callback on the device and
    # converts every result on its way, ~40 us an array, so the six inputs and four outputs cost ~0.3 ms an env
    # step at 16 envs, more than packing them in JAX and splitting views on the host
    # (benchmarks/results/c_engine_push_cpu.json).
    in_sizes = (m.nq, m.nv, m.nu, 3 * m.nmocap, 4 * m.nmocap, m.nv)
    in_cuts = np.cumsum(in_sizes)[:-1]
    out_names = ("qpos", "qvel", "qacc_warmstart", "sensordata")
    out_sizes = (m.nq, m.nv, m.nv, m.nsensordata)
    out_cuts = np.cumsum(out_sizes)[:-1]

    def host(fn, dtype):
        def call(packed):
            # ``packed`` carries any number of leading batch dims (from nested vmaps): flatten them for C.
            batch = packed.shape[:-1]
            flat = np.asarray(packed, np.float64).reshape(-1, packed.shape[-1])
            out = _c_worker().submit(fn, *np.split(flat, in_cuts, axis=1)).result()
            return np.concatenate([out[k] for k in out_names], axis=1).astype(dtype).reshape(batch + (-1,))

        return call

    def callback(fn, dtype, out_type):
        """The host round trip, as a function of one jax array.

        On the CPU backend ``buffer_callback`` hands the callback XLA's own buffers and takes the result written
        into its output buffer: ~4 us a call on these 2 cores, where ``pure_callback`` spends ~65 us wrapping its
        argument and converting and copying its result (benchmarks/c_engine.py at 16 envs, this change alone, one
        paired run: herjax / raw C MuJoCo 0.75 -> 0.83). Other backends hand it device memory, so they keep
        ``pure_callback``.
        """
        call = host(fn, dtype)
        if buffer_callback is None or jax.default_backend() != "cpu":
            return lambda packed: jax.pure_callback(call, out_type, packed, vmap_method="broadcast_all")

        def in_place(ctx, out, packed):
            np.asarray(out)[...] = call(np.asarray(packed))

        return buffer_callback(in_place, out_type, vmap_method="broadcast_all")

    def make(fn):
        def pure(s: PhysState) -> PhysState:
            # Outputs keep the caller's float dtype: float32, or float64 under jax_enable_x64.
            batch, dtype = s.qpos.shape[:-1], s.qpos.dtype
            packed = jnp.concatenate(
                [x.reshape(batch + (-1,)).astype(dtype)
                 for x in (s.qpos, s.qvel, s.ctrl, s.mocap_pos, s.mocap_quat, s.qacc_warmstart)], axis=-1)
            out = callback(fn, dtype, jax.ShapeDtypeStruct(batch + (sum(out_sizes),), dtype))(packed)
            return s._replace(**dict(zip(out_names, jnp.split(out, out_cuts, axis=-1))))

        return pure

    return Physics(forward=make(engine.forward), step=make(engine.step), backend="mujoco")
