from setuptools import find_packages, setup

setup(
    name="acme-linkerpy-static",
    version="1.0",
    packages=find_packages(include=["acme_linkerpy*"]) + ["twisted.plugins"],
    package_data={"twisted.plugins": ["acme_linkerpy_static.py"]},
    install_requires=["linkerpy"],
)
