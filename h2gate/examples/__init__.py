"""Examples shipped inside the package, so they work from an installed wheel: ``h2gate h2gate.examples.hello:app``."""
