"""
An example third-party linkerpy plugin package.
"""
