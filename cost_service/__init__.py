"""Cost evaluation as a service: the `tunas_jax.ppe.v1` gRPC server, its client, and
scale-out of dataset builds on Ray.

- `cost_service.v1`: the versioned `.proto` and its checked-in generated stubs
  (`cost_service.codegen` regenerates them);
- `cost_service.evaluator`: request validation and costing (no gRPC), shared
  by every transport;
- `cost_service.server`: the grpcio server (`tunas-jax serve-costs`): health
  checking, TLS, graceful shutdown, deadlines, size limits;
- `cost_service.client`: `RemoteCostModel`, the cost interface over gRPC.

Needs the `service` extra (grpcio, grpcio-health-checking, protobuf). Imports
`cost_models`, `search_spaces` and `tasks`. (Dataset builds on Ray live in
`cost_models.ray_executor`: they need Ray, not this service.)
"""
