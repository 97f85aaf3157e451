"""
Plugin discovery and lookup by kind.
"""
