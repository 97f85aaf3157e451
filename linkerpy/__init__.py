"""
linkerpy: a programmable service-mesh router built on Twisted.
"""
__version__ = "0.1.0"
