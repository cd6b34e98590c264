"""Health probes for the container and the load balancer: /healthz and /readyz."""
