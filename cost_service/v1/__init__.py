"""tunas_jax.ppe.v1: the service definition (ppe.proto) and its generated, checked-in stubs."""
