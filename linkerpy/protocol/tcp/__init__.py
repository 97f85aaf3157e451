"""
The raw TCP router (C{protocol: tcp}): byte streams routed by a fixed name
(C{dstName}) or by the TLS server name (C{io.l5d.tls.sni}), with TLS
terminated, passed through untouched, or originated towards the origin.
Also the tiny C{httpsRedirect} router used by edge configurations.
"""
