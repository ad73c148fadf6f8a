"""Call the example service with grpcio: ``python examples/grpc/client.py [--ca CA.pem] [HOST:PORT] [NAME]``.

Without ``--ca`` the channel is cleartext HTTP/2 (h2c, what h2gate serves
without a certificate); with it, TLS trusting that CA.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for greet.v1, when run from elsewhere

from greet.v1.greet_pb2 import GreetRequest
from greet.v1.greet_pb2_grpc import GreetServiceStub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", nargs="?", default="localhost:8000")
    parser.add_argument("name", nargs="?", default="world")
    parser.add_argument("--ca", help="PEM file of the CA that signed the server's certificate (TLS)")
    args = parser.parse_args()
    if args.ca:
        credentials = grpc.ssl_channel_credentials(Path(args.ca).read_bytes())
        channel = grpc.secure_channel(args.target, credentials)
    else:
        channel = grpc.insecure_channel(args.target)
    with channel:
        stub = GreetServiceStub(channel)
        print("Greet:", stub.Greet(GreetRequest(name=args.name), timeout=10).greeting)
        for reply in stub.GreetMany(GreetRequest(name=args.name), timeout=30):
            print("GreetMany:", reply.greeting)
        names = (GreetRequest(name=f"{args.name} {i}") for i in range(1, 4))
        for reply in stub.Chat(names, timeout=10):
            print("Chat:", reply.greeting)
        try:
            stub.Greet(GreetRequest(name=""), timeout=10)
        except grpc.RpcError as exc:
            print("Greet with no name:", exc.code().name, exc.details())


if __name__ == "__main__":
    main()
