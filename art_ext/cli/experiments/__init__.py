"""
The experiments behind the CLI, one module per method, called by both the commands (``art-ext lmt`` ...) and the
demo's sections, so that neither imports the other.
"""
