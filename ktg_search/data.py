"""(placeholder: being written) Data sets."""
def register_builtins(registry):
    pass
