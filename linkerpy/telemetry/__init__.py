"""
Metrics and their exporters.
"""
