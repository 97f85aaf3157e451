"""
TLS termination (server side, SNI, reload) and origination (client side).
"""
