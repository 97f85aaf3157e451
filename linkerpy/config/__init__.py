"""
Configuration: loading YAML/JSON, structuring it into typed frozen objects,
and reporting every problem with its key path and line.
"""

from linkerpy.config.errors import ConfigError, Problem
from linkerpy.config.structure import Configured, setting, structure, unstructure

__all__ = ["ConfigError", "Problem", "Configured", "setting", "structure", "unstructure"]
