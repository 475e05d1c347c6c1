"""Cost evaluation as a service: the `tunas_jax.ppe.v1` gRPC server, its client, and
scale-out of dataset builds on Ray.

- `cost_service.v1`: the versioned `.proto` and its checked-in generated stubs
  (`cost_service.codegen` regenerates them);
- `cost_service.evaluator`: request validation and costing (no gRPC), shared
  by every transport;
- `cost_service.server`: the grpcio server (`tunas-jax serve-costs`): health
  checking, TLS, graceful shutdown, deadlines, size limits;
- `cost_service.client`: `RemoteCostModel`, the cost interface over gRPC;
- `cost_service.ray_executor`: simulator dataset builds on a Ray actor pool.

Needs the `service` extra (grpcio, grpcio-health-checking, protobuf); the Ray
executor the `ray` extra. Imports `cost_models`, `search_spaces` and `tasks`.
"""
