"""An app module importing a package that is not installed: the app's bug, shown with its traceback."""

import h2gate_test_no_such_dependency  # noqa: F401


async def app(scope, receive, send):  # pragma: no cover - never imported successfully
    pass
