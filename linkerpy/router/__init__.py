"""
The protocol-agnostic router: identification results, the binding and
client caches, and the per-name service and per-client stacks.
"""
