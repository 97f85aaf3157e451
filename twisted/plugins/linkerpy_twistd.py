"""
The C{twistd linkerpy} and C{twistd linkerpy-namerd} service makers.

Import-light on purpose: C{ServiceMaker} loads C{linkerpy.tap} only when the
subcommand is used, so listing twistd plugins never imports the data plane
or installs a reactor.
"""

from twisted.application.service import ServiceMaker

linkerpy = ServiceMaker(
    "linkerpy",
    "linkerpy.tap",
    "A programmable service-mesh router (Linkerd 1 style configuration).",
    "linkerpy",
)

linkerpyNamerd = ServiceMaker(
    "linkerpy-namerd",
    "linkerpy.namerd.tap",
    "The linkerpy control plane: dtab and policy storage, HTTP and gRPC mesh APIs.",
    "linkerpy-namerd",
)
