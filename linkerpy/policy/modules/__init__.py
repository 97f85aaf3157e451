"""
Built-in policy modules (one stage of a request path each).
"""
