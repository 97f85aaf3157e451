"""
Demo services for trying linkerpy out.
"""
