"""What we ship: the sdist and the wheel.

Not ``tests/packaging/``: servers the suite starts run with tests/ on sys.path (cwd), where a folder of
that name would shadow the ``packaging`` library.
"""
