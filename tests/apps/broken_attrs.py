"""Names that exist but are not usable applications."""

not_callable = 42


def needs_args(settings):  # a factory that cannot be called without arguments
    raise AssertionError("never called")


def factory_raises():
    """A factory with a bug of its own: its traceback must reach the user."""
    raise TypeError("bug inside the factory on purpose")
