"""Devices that measure (group, cores) pairs: the simulator, measured tables and this machine's CPU
through ONNX Runtime. Never imports the cost model.
"""
