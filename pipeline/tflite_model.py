"""Read a .tflite flatbuffer: operators in execution order, tensors and their sizes, MACs.

Uses the schema module the `tflite-micro` wheel ships, so inspecting a model never imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

BUILTIN_NAMES = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
TYPE_NAMES = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
TYPE_BYTES = {
    "FLOAT32": 4, "FLOAT16": 2, "FLOAT64": 8, "INT32": 4, "UINT32": 4, "INT64": 8, "UINT64": 8, "INT16": 2,
    "UINT16": 2, "INT8": 1, "UINT8": 1, "BOOL": 1, "COMPLEX64": 8, "COMPLEX128": 16, "INT4": 1,
}  # fmt: skip


class ModelFormatError(ValueError):
    pass


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    constant: bool  # weights live in flash; only the others need arena memory
    scale: float | None
    zero_point: int | None
    variable: bool = False  # state kept across invokes (TFLM holds it in the persistent tail, not the head)


@dataclass(frozen=True)
class Operator:
    name: str  # builtin name, e.g. CONV_2D, or CUSTOM:<code>
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class Graph:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    @property
    def op_names(self) -> list[str]:
        """Distinct operators, in order of first use."""
        return list(dict.fromkeys(op.name for op in self.operators))


def read_model(data: bytes) -> Graph:
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFormatError("not a TFLite flatbuffer (missing the 'TFL3' identifier)")
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))
    if not model.subgraphs:
        raise ModelFormatError("the model has no subgraph")
    if len(model.subgraphs) > 1:
        raise ModelFormatError(f"{len(model.subgraphs)} subgraphs: only single-subgraph models are supported")
    graph = model.subgraphs[0]
    codes = []
    for code in model.operatorCodes:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            name = f"CUSTOM:{(code.customCode or b'').decode(errors='replace')}"
        codes.append(name)
    tensors = []
    for i, t in enumerate(graph.tensors):
        dtype = TYPE_NAMES.get(t.type, f"TYPE_{t.type}")
        shape = tuple(int(s) for s in (t.shape if t.shape is not None else []))
        buffer = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        constant = buffer is not None and ((buffer.data is not None and len(buffer.data) > 0) or buffer.offset > 1)
        q = t.quantization
        scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else None
        zero = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else None
        nbytes = int(np.prod(shape, dtype=np.int64)) * TYPE_BYTES.get(dtype, 4) if shape else TYPE_BYTES.get(dtype, 4)
        name = t.name.decode(errors="replace") if isinstance(t.name, bytes) else str(t.name)
        tensors.append(Tensor(i, name, shape, dtype, nbytes, constant, scale, zero, bool(t.isVariable)))
    operators = [
        Operator(
            codes[op.opcodeIndex],
            tuple(int(x) for x in (op.inputs if op.inputs is not None else []) if x >= 0),
            tuple(int(x) for x in (op.outputs if op.outputs is not None else []) if x >= 0),
        )
        for op in (graph.operators or [])
    ]
    return Graph(tensors, operators, tuple(int(x) for x in graph.inputs), tuple(int(x) for x in graph.outputs))


def get_metadata(data: bytes, name: str) -> bytes | None:
    """The buffer of the model's metadata entry `name`, or None."""
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))
    for entry in model.metadata or []:
        if (entry.name.decode() if isinstance(entry.name, bytes) else entry.name) == name:
            buffer = model.buffers[entry.buffer].data
            return b"" if buffer is None else np.asarray(buffer, dtype=np.uint8).tobytes()
    return None


def set_metadata(data: bytes, name: str, value: bytes) -> bytes:
    """The model with metadata entry `name` holding `value` (replacing an entry of that name). Interpreters ignore
    metadata they do not know, so operators, tensors and the arena are untouched."""
    import flatbuffers

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))
    model.metadata = [m for m in (model.metadata or []) if (m.name or b"") not in (name, name.encode())]
    buffer = fb.BufferT()
    buffer.data = np.frombuffer(value, dtype=np.uint8)
    entry = fb.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers)
    model.buffers.append(buffer)
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(data) + len(value) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL")


def hybrid_ops(graph: Graph) -> list[str]:
    """Operators that take float activations with integer weights (dynamic-range quantization): LiteRT runs
    them, TFLite Micro does not."""
    found = []
    for op in graph.operators:
        if op.name not in WEIGHTED_OPS or len(op.inputs) < 2:
            continue
        activation, weights = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
        if activation.dtype == "FLOAT32" and weights.constant and weights.dtype in ("INT8", "UINT8", "INT4"):
            found.append(op.name)
    return list(dict.fromkeys(found))


def live_tensor_lower_bound(graph: Graph) -> dict:
    """The largest total size of non-constant tensors that must coexist at some step of the execution order.

    A tensor lives from the op that writes it (graph inputs: from the start) to the last op that reads it (graph
    outputs: to the end). No planner can place co-live tensors in fewer bytes, so it bounds the arena's head.
    """
    n = len(graph.operators)
    first: dict[int, int] = {i: -1 for i in graph.inputs}
    last: dict[int, int] = {i: n for i in graph.outputs}
    for step, op in enumerate(graph.operators):
        for t in op.outputs:
            first.setdefault(t, step)
        for t in op.inputs:
            last[t] = max(last.get(t, step), step)
    spans = {}
    for t in set(first) | set(last):
        if not graph.tensors[t].constant:
            lo = first.get(t, -1)  # read but never written: state that exists from the start
            spans[t] = (lo, last.get(t, lo))  # written but never read: lives only at its step
    best: dict = {"bytes": 0, "step": None, "op": None, "tensors": []}
    for step in range(n):
        live = [t for t, (lo, hi) in spans.items() if lo <= step <= hi]
        total = sum(graph.tensors[t].nbytes for t in live)
        if total > best["bytes"]:
            best = {
                "bytes": total,
                "step": step,
                "op": graph.operators[step].name,
                "tensors": sorted(graph.tensors[t].name for t in live),
            }
    return best


def macs(graph: Graph) -> int:
    """Multiply-accumulates of one inference in convolutions and fully connected layers."""
    total = 0
    for op in graph.operators:
        if op.name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") or len(op.inputs) < 2:
            continue
        out = graph.tensors[op.outputs[0]].shape
        weights = graph.tensors[op.inputs[1]].shape
        out_elements = int(np.prod(out))
        if op.name == "CONV_2D":  # weights [out_c, kh, kw, in_c]
            total += out_elements * int(np.prod(weights[1:]))
        elif op.name == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, channels]
            total += out_elements * weights[1] * weights[2]
        else:  # weights [units, in_features]
            total += out_elements * weights[-1]
    return total


def random_inputs(tensor: Tensor, count: int, seed: int = 0) -> np.ndarray:
    """`count` seeded random inputs for `tensor` (full integer range, or standard normal for floats): for timing
    and for comparing two builds of one model when no data set is at hand."""
    rng = np.random.default_rng(seed)
    shape = (count, *tensor.shape[1:])
    dtype = np.dtype(tensor.dtype.lower())
    if np.issubdtype(dtype, np.integer):
        return rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(size=shape).astype(dtype)
    raise ValueError(f"cannot make inputs for a {tensor.dtype} input tensor")
