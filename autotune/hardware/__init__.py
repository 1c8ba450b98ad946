"""What is known of a part without measuring it: its hardware config (datasheet and, for a simulated
part, device), families of parts, this host's CPU, and datasheet-only latency estimates.
"""
