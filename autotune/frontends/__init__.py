"""Where graphs come from: the built-in zoo, ONNX files (import, converters, patterns, batching,
export), and synthetic layer groups.
"""
