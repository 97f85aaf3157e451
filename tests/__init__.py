"""
linkerpy test suite.
"""
