"""
Packaging for linkerpy.

The C{twisted/plugins} directory is a namespace-style dropin directory (it has
no C{__init__.py}, so it never shadows Twisted's own), which setuptools cannot
find by itself: it is listed here explicitly so the C{twistd linkerpy} service
maker and the built-in plugins ship in both the wheel and the sdist.
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["linkerpy", "linkerpy.*"]) + ["twisted.plugins"],
    # (setup.cfg's [options.package_data] is overridden by this keyword, so
    # every package's data is listed here.)
    package_data={
        "twisted.plugins": ["linkerpy_*.py"],
        "linkerpy": ["py.typed"],
        "linkerpy.namerd.mesh.protos": ["*.proto"],
    },
)
