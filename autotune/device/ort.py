"""Run a group (or a whole network) exported as ONNX on this machine's CPU with ONNX Runtime, and time it.

A group file from `export-groups` has shapes only: weights are graph inputs listed in its metadata,
and a few IR layers with no standard ONNX form travel as `ai.autotune` nodes. `runnable` makes it
executable without changing what it costs: weights become initializers with random values (so ORT
pre-packs them as it does real weights), and each custom node becomes a stand-in that moves the
same bytes (flatten, slice or tile to the output's size, reshape). onnxruntime is an optional
extra (`pip install autotune[onnxruntime]`), imported on first use.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autotune.device.base import Device
from autotune.errors import AutotuneError
from autotune.frontends.onnx_export import graph_to_onnx
from autotune.frontends.onnx_import import DOMAIN, WEIGHTS_KEY
from autotune.hardware.config import HardwareConfig
from autotune.hardware.host import available_memory
from autotune.ir.graph import Group
from autotune.ir.tables import GroupBatch


def require_ort():
    """The onnxruntime module, or one line saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise AutotuneError("the onnxruntime backend needs onnxruntime: pip install 'autotune[onnxruntime]' "
                            "(the Makefile's venv has it)") from None
    return onnxruntime


def _weight_inputs(model) -> set[str]:
    """The graph inputs an autotune export lists as weights (its `autotune.weights` metadata)."""

    meta = {p.key: p.value for p in model.metadata_props}
    return set(json.loads(meta.get(WEIGHTS_KEY, "[]")))


def weight_bytes(model) -> int:
    """Bytes of fp32 weights `runnable` would materialise for an exported model."""
    weights = _weight_inputs(model)
    return 4 * sum(math.prod(d.dim_value for d in vi.type.tensor_type.shape.dim) for vi in model.graph.input
                   if vi.name in weights)


def _tensor_bytes(vi) -> int:
    """Bytes of a ValueInfo's tensor (a symbolic or unknown dim counts as 1, as the feeds make it)."""
    from onnx import helper

    t = vi.type.tensor_type
    item = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type or 1)).itemsize
    return item * math.prod(max(d.dim_value, 1) for d in t.shape.dim)


def memory_estimate(model) -> int:
    """Bytes measuring an exported model takes at its peak, from its shapes alone: the feeds, every
    tensor it computes (outputs and value_info) twice (ORT's arena keeps one run's tensors while the
    next allocates its own: a depthwise conv's steady peak was its feed plus twice its two tensors),
    and its weights three times (the serialized model, ORT's copy and its pre-packed copy)."""
    from onnx import helper

    g = model.graph
    weights = _weight_inputs(model)
    feeds = sum(_tensor_bytes(vi) for vi in g.input if vi.name not in weights)
    tensors = sum(_tensor_bytes(vi) for vi in list(g.value_info) + list(g.output))
    inits = sum(np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type or 1)).itemsize * math.prod(t.dims)
                for t in g.initializer)
    return feeds + 2 * tensors + 3 * (weight_bytes(model) + inits)


def runnable(model, seed: int = 0):
    """A copy of an autotune-exported ModelProto that ONNX Runtime can execute (see module doc)."""
    from onnx import helper

    m = type(model)()
    m.CopyFrom(model)
    g = m.graph
    weights = _weight_inputs(m)
    rng = np.random.default_rng(seed)
    keep = [vi for vi in g.input if vi.name not in weights]
    for vi in g.input:
        if vi.name in weights:
            shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
            g.initializer.append(_random_weight(rng, shape, vi.name))
    del g.input[:]
    g.input.extend(keep)
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in list(g.input) + list(g.value_info) + list(g.output)}
    nodes = []
    for n in g.node:
        if n.domain != DOMAIN:
            nodes.append(n)
            continue
        x, y = n.input[0], n.output[0]
        size_in, out = math.prod(shapes[x]), shapes[y]
        size_out = math.prod(out)
        flat, moved = f"{y}/flat", f"{y}/moved"
        nodes.append(helper.make_node("Reshape", [x, _const(g, f"{y}/n", [-1])], [flat]))
        if size_out <= size_in:
            nodes.append(helper.make_node("Slice", [flat, _const(g, f"{y}/s0", [0]), _const(g, f"{y}/s1", [size_out])],
                                          [moved]))
        else:
            reps = -(-size_out // size_in)
            tiled = f"{y}/tiled"
            nodes.append(helper.make_node("Tile", [flat, _const(g, f"{y}/r", [reps])], [tiled]))
            nodes.append(helper.make_node("Slice", [tiled, _const(g, f"{y}/s0", [0]),
                                                    _const(g, f"{y}/s1", [size_out])], [moved]))
        # a pass over the bytes, as the layer's own kernel would make (ORT elides a bare reshape)
        nodes.append(helper.make_node("Neg", [moved], [f"{y}/neg"]))
        nodes.append(helper.make_node("Reshape", [f"{y}/neg", _const(g, f"{y}/shape", out)], [y]))
    del g.node[:]
    g.node.extend(nodes)
    keep_ops = [op for op in m.opset_import if op.domain != DOMAIN]
    del m.opset_import[:]
    m.opset_import.extend(keep_ops)
    del m.metadata_props[:]
    return m


def _random_weight(rng: np.random.Generator, shape: list[int], name: str):
    """A TensorProto of small random fp32 weights, drawn in fp32 (no fp64 copy twice the size)."""
    from onnx import numpy_helper

    w = rng.standard_normal(shape, dtype=np.float32)
    w *= 0.02
    return numpy_helper.from_array(w, name)


def _const(g, name: str, value: list[int]) -> str:
    from onnx import numpy_helper

    g.initializer.append(numpy_helper.from_array(np.array(value, np.int64), name))
    return name


@dataclass
class Timing:
    """One measurement: the median of `repeats` timed runs, after warm-up."""

    ms: float
    repeats: int
    spread: float  # (max - min) / median of the timed runs


def time_model(model_bytes: bytes, threads: int, warmup: int = 2, repeats: int = 7, timeout_s: float = 10.0,
               seed: int = 0, min_time_s: float = 0.05, max_runs: int = 200) -> Timing:
    """Median wall time of one inference of a runnable model with `threads` intra-op threads: at
    least `repeats` timed runs after `warmup`, more (up to `max_runs`) until `min_time_s` of timed
    runs, so a microsecond kernel gets a stable median; runs stop once `timeout_s` is spent (at
    least one timed run), and a first run slower than the timeout is an AutotuneError."""
    ort = require_ort()
    try:
        return _time(ort, model_bytes, threads, warmup, repeats, timeout_s, seed, min_time_s, max_runs)
    except MemoryError:
        raise AutotuneError("out of memory") from None
    except _ort_errors(ort) as err:  # its allocation failures among them
        raise AutotuneError(f"ONNX Runtime failed: {(str(err).splitlines() or [type(err).__name__])[0]}") from None


def _ort_errors(ort) -> tuple[type[Exception], ...]:
    """The exception classes ONNX Runtime raises (Fail, RuntimeException, InvalidGraph, ...)."""
    state = ort.capi.onnxruntime_pybind11_state
    return tuple(c for c in vars(state).values() if isinstance(c, type) and issubclass(c, Exception))


def _time(ort, model_bytes: bytes, threads: int, warmup: int, repeats: int, timeout_s: float, seed: int,
          min_time_s: float, max_runs: int) -> Timing:
    """time_model's work, ORT's errors left to it."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    # Idle intra-op threads sleep instead of spinning: on a machine with few cores, spinning threads
    # compete with the one doing the work, and the same row re-timed varied 3x as much
    # (docs/costmodel.md, "Timing on the CPU").
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in sess.get_inputs():
        shape = [int(d) if isinstance(d, int) else 1 for d in inp.shape]
        feeds[inp.name] = (rng.integers(0, 2, shape, dtype=np.int64) if "int64" in inp.type
                           else rng.standard_normal(shape, dtype=np.float32))  # no fp64 copy twice the size
    t_end = time.perf_counter() + timeout_s
    times: list[float] = []
    k = 0
    while True:
        t0 = time.perf_counter()
        sess.run(None, feeds)
        dt = time.perf_counter() - t0
        if k == 0 and dt > timeout_s:
            raise AutotuneError(f"one run took {dt:.1f} s, over the {timeout_s:g} s timeout")
        if k >= warmup:
            times.append(dt)
        k += 1
        enough = len(times) >= repeats and (sum(times) >= min_time_s or len(times) >= max_runs)
        if enough or (time.perf_counter() > t_end and times):
            break
    med = float(np.median(times)) * 1e3
    return Timing(med, len(times), float((max(times) - min(times)) * 1e3 / med) if med > 0 else 0.0)


@dataclass
class OrtDevice(Device):
    """This machine's CPU through ONNX Runtime: each (group, cores) pair is exported as ONNX, made
    runnable and timed with `cores` intra-op threads (the median of `repeats` runs), in `passes`
    passes over all the pairs; a pair's time is its fastest pass, the one a machine shared with
    others slowed least (docs/costmodel.md, "Timing on the CPU"). A real timer has no noise-free
    reading, so `seed=None` times it too; a seed only seeds the random inputs."""

    hw: HardwareConfig | None = None  # the part, for callers that have one; timing needs only the host
    repeats: int = 7
    timeout_s: float = 10.0
    passes: int = 3
    warmup: int = 2
    name = "onnxruntime"

    def measure(self, groups: Sequence[Group], cores: Sequence[int] | np.ndarray,
                seed: int | None = None) -> np.ndarray:
        seeds = [n if seed is None else int(seed) + n for n in range(len(groups))]
        return self.time(runnable_models([group_onnx(g) for g in groups], seeds), [int(k) for k in cores])

    def time(self, models: Sequence[bytes], threads: Sequence[int], progress: bool = False) -> np.ndarray:
        """The fastest of `passes` timings of each runnable model, the passes over all of them in turn."""
        from tqdm import tqdm

        out = np.full(len(models), np.inf)
        with tqdm(total=self.passes * len(models), desc="time", unit="session", disable=not progress) as bar:
            for _ in range(self.passes):
                for n, (m, k) in enumerate(zip(models, threads)):
                    out[n] = min(out[n], self.time_one(m, k).ms)
                    bar.update()
        return out

    def time_one(self, model: bytes, threads: int, seed: int = 0) -> Timing:
        """One timing of a runnable model with `threads` intra-op threads (`time_model` with this
        device's warm-up, repeats and timeout): a pass of `time`, or one line of a profile."""
        return time_model(model, threads, warmup=self.warmup, repeats=self.repeats, timeout_s=self.timeout_s, seed=seed)

    def measure_batch(self, batch: GroupBatch, gidx: np.ndarray, cores: np.ndarray,
                      seed: int | None = None) -> np.ndarray:
        raise AutotuneError("ONNX Runtime times ONNX files, which a feature batch does not hold: "
                            "measure (group, cores) pairs with OrtDevice.measure")


def verify_plan(p, graph, hw, repeats: int = 7, timeout_s: float = 10.0) -> float:
    """Measure a plan on this CPU (OrtDevice): each group as one ONNX Runtime session with its core
    count as threads (filling each group's and the plan's measured ms, `device_ms`), and return
    the whole network as one session at all threads, timed in the same passes: what ORT gives by
    default, to compare honestly."""
    models, threads = plan_models(p, graph, hw)
    return record_plan(p, OrtDevice(hw, repeats, timeout_s).time(models, threads))


def plan_models(p, graph, hw) -> tuple[list[bytes], list[int]]:
    """The runnable models of a plan's groups and, last, of the whole network, with their threads:
    what verify_plan times (several plans can be timed in the same passes, further apart)."""

    exported = [group_onnx(graph.group(g.i, g.j)) for g in p.groups] + [graph_to_onnx(graph)]
    return runnable_models(exported, list(range(len(p.groups))) + [0]), [g.cores for g in p.groups] + [hw.cores]


def group_onnx(g: Group):
    """A group as an exported ONNX model (shapes only, weights as inputs): what `runnable` completes."""
    return graph_to_onnx(g.as_graph(f"{g.graph.name}[{g.layers[0].name}..{g.layers[-1].name}]"))


def runnable_models(exported: Sequence, seeds: Sequence[int]) -> list[bytes]:
    """The exported models made runnable (random weights from `seeds`) and serialized, all held for
    the passes over them; refused with one line, before any is made, if their weights plus the
    largest session would not fit in this host's free memory."""
    need = sum(weight_bytes(m) for m in exported) + max((memory_estimate(m) for m in exported), default=0)
    free = available_memory()
    if need > free:
        raise AutotuneError(f"timing these {len(exported)} models on this CPU needs about {need / 2**30:.1f} GiB "
                            f"(their weights, held for every pass, and the largest session), more than the "
                            f"{free / 2**30:.1f} GiB free; time fewer or smaller groups (a smaller --batch)")
    return [runnable(m, seed=s).SerializeToString() for m, s in zip(exported, seeds)]


def record_plan(p, ms: np.ndarray) -> float:
    """Write the times of plan_models' models into the plan (`device_ms`); return the whole network's."""
    for g, t in zip(p.groups, ms):
        g.device_ms = float(t)
    p.device_ms = float(ms[:-1].sum())
    return float(ms[-1])
