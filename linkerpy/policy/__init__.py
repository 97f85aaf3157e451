"""
Per-service and per-client communications policy.
"""
