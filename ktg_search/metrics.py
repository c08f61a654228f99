"""(placeholder: being written) Metrics."""
def register_builtins(registry):
    pass
