"""
Protocol implementations (HTTP/1.1, HTTP/2, TCP).
"""
