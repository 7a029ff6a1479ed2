"""
The Prometheus pull exposer: pure rendering, request guards, the Quart app, the server.
"""
