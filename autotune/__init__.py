"""autotune: choose layer fusion and core counts for DNNs on multi-core accelerators from a learned cost model."""

__version__ = "0.1.0"
