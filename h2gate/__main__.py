"""``python -m h2gate``: the command line, or a worker when a supervisor started us."""

import os
import sys

from h2gate.ops.workers import WORKER_ENV

if __name__ == "__main__":
    spec = os.environ.pop(WORKER_ENV, None)
    if spec is not None:
        from h2gate.ops.run import serve_sockets
        from h2gate.ops.workers import worker_main

        sys.exit(worker_main(spec, serve_sockets))
    from h2gate.cli import main

    main(prog_name="h2gate")
