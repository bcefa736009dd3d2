"""The OpenEnv server a run starts for `openenv.serve: true` (retrain/environments/openenv.py starts and stops it):

    python -m retrain.environments.openenv_server module:Class '{"param": 1}'

OpenEnv's own app (`create_app`) around the class, served by uvicorn on a free port of 127.0.0.1 that the first
line of stdout names. It stops when it is signalled, and by itself when the process that started it is gone.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:  # the run that started us died without stopping us
            os._exit(0)


def main(argv: list[str]) -> None:
    reference, params = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    # The run reads one line from stdout, the port. Everything else anyone prints (the environment's module on
    # import, its constructor, its steps) goes to the log (stderr): never before that line, never into a pipe
    # nobody reads.
    announce = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    import functools

    import uvicorn
    from openenv.core.env_server.http_server import create_app

    from retrain.environments.openenv import action_class, environment_class, observation_class

    cls = environment_class(reference)
    # A partial, not a lambda: OpenEnv reads the class's flags (REQUIRES_SINGLE_THREAD_EXECUTOR) through it.
    app = create_app(functools.partial(cls, **params), action_class(cls), observation_class(cls),
                     env_name=cls.__name__, max_concurrent_envs=1024)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    announce.write(f"openenv server listening on port {sock.getsockname()[1]}\n")
    announce.close()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws_max_size=16 * 2**20))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1:])
