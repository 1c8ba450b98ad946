"""Op kinds of the IR, one spec each: everything the tool knows about an op lives in its file.

A spec (`OpSpec`) says how the op's output shape follows from its inputs, how many MACs, vector
ops and weights it has, its window (for halos and bank strides), how its reduction channels and
groups are counted, whether the compiler may fuse it, which bucket of the features' op mix it
counts in, and how it is written to ONNX. The graph IR, the batch tables, the features, the
analytic estimate, the simulator, the planner and the exporter read specs, never op names.

Adding an op is one new file here (a subclass of `OpSpec`, registered with `@register`) plus a
test: every module of this package is imported, in name order, when the package is; see
docs/architecture.md. Registration order fixes the op codes used inside one run (nothing stores them).
"""

from __future__ import annotations

import importlib
import pkgutil

from autotune.ir.ops.base import (  # noqa: F401
    COUNT_BUCKETS,
    ELEMENT_OPS,
    OpSpec,
    bucket_array,
    code,
    element_ops,
    flag_array,
    register,
    registry,
    spec,
    unregister,
)

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name != "base":
        importlib.import_module(f"{__name__}.{_mod.name}")
