"""`tunas-jax serve-costs`: the cost-evaluation gRPC service (`tunas_jax.ppe.v1`).

    tunas-jax serve-costs --port 50051 [--host 127.0.0.1] [--workers N] [--threads T]
    tunas-jax serve-costs --host 0.0.0.0 --port 50051 --tls-cert server.pem \
        --tls-key server.key [--tls-client-ca clients_ca.pem]

Prints `serving on HOST:PORT` once it listens (`--port 0` picks a free port)
and serves until SIGTERM or Ctrl-C, letting in-flight requests finish.
Loopback only unless TLS is configured. Needs the `service` extra
(`pip install 'tunas-jax[service]'`). The server lives in `cost_service.server`.
"""

from __future__ import annotations

import argparse
import sys

from tunas_jax.errors import UsageError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve-costs", help="serve cost evaluation over gRPC (tunas_jax.ppe.v1)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default loopback; others need TLS)")
    parser.add_argument("--port", type=int, required=True, help="port (0 = any free port)")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes sharing the port (default 1)")
    parser.add_argument("--threads", type=int, default=8, help="RPC threads per process")
    parser.add_argument("--grace", type=float, default=30.0,
                        help="seconds in-flight requests get to finish on shutdown")
    parser.add_argument("--tls-cert", help="server certificate chain (PEM)")
    parser.add_argument("--tls-key", help="server private key (PEM)")
    parser.add_argument("--tls-client-ca", help="CA (PEM) clients' certificates must chain to")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from cost_service import server
    except ImportError as err:
        raise UsageError(f"serve-costs needs the 'service' extra ({err}); "
                         "pip install 'tunas-jax[service]'") from None
    if bool(args.tls_cert) != bool(args.tls_key) or (args.tls_client_ca and not args.tls_cert):
        raise UsageError("--tls-cert and --tls-key go together (and --tls-client-ca needs them)")
    tls = (server.TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca)
           if args.tls_cert else None)
    try:
        server.serve(args.host, args.port, args.workers, args.threads, tls, args.grace,
                     on_ready=lambda address: print(f"serving on {address}", flush=True))
    except ValueError as err:
        raise UsageError(str(err)) from None
    except RuntimeError as err:  # a worker process died: one line, exit 1
        print(f"tunas-jax serve-costs: error: {err}", file=sys.stderr)
        return 1
    return 0
