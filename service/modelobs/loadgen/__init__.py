"""Client-side traffic for ``modelobs load``: the load runner and the scenarios it sends.

Not part of the server: ``modelobs serve`` never imports it, and the service image leaves it
out (see the Dockerfile).
"""
