"""
HTTP/2: a lean server and client connection on the C{h2} library, and the
C{protocol: h2} router (gRPC included).
"""
