"""Every Prometheus metric of the service, defined once, in a registry of its own per app (so
tests can build several apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256)


class Metrics:
    """The service's metrics. Names are part of the operator contract: dashboards and the
    autoscaler key on `abpn_queue_depth` and `abpn_batch_size`."""

    def __init__(self, *, weights_sha256: bool = True) -> None:
        """`weights_sha256`: label abpn_model_info with the weights' hash. Off when API keys
        are on: /v1/models then keeps the hash behind the key, and scrapers have none."""
        self._model_labels = ["name", "version"] + (["weights_sha256"] if weights_sha256 else [])
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "abpn_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "abpn_request_duration_seconds",
            "End-to-end request latency, from arrival to the last byte of the response.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait_seconds = Histogram(
            "abpn_queue_wait_seconds",
            "Time an image waited in the queue for a replica.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decode_seconds = Histogram(
            "abpn_decode_seconds",
            "Time to read the header and decode an image.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.faces_seconds = Histogram(
            "abpn_faces_seconds",
            "Time to find an image's faces and skin in a face worker, waiting for one included.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_seconds = Histogram(
            "abpn_model_seconds",
            "Time one batch spent in the model, by device.",
            ["device"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.encode_seconds = Histogram(
            "abpn_encode_seconds",
            "Time to encode a response image.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "abpn_batch_size",
            "Images per model call, by device.",
            ["device"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "abpn_queue_depth",
            "Decoded requests waiting for a replica: the autoscaling signal.",
            registry=r,
        )
        self.uploads_in_progress = Gauge(
            "abpn_uploads_in_progress",
            "Admitted requests still arriving, being decoded or having their faces found (they "
            "hold a queue place, but a slow client must not scale the deployment out).",
            registry=r,
        )
        self.memory_budget = Gauge(
            "abpn_memory_budget_bytes",
            "ABPN_MEMORY_BUDGET_MB in bytes: what requests in flight may hold at once.",
            registry=r,
        )
        self.memory_in_flight = Gauge(
            "abpn_memory_in_flight_bytes",
            "Bytes the requests in flight hold of the memory budget (bodies, and photos as "
            "their headers state them); a request past the budget is answered 503 memory_full.",
            registry=r,
        )
        self.in_flight = Gauge(
            "abpn_in_flight_requests",
            "Retouch requests being handled, from admission to the response.",
            registry=r,
        )
        self.pixels = Counter(
            "abpn_pixels_processed",
            "Pixels retouched by the model.",
            registry=r,
        )
        self.rejected = Counter(
            "abpn_requests_rejected",
            "Requests refused without being computed, by error code (queue_full, draining, "
            "body_too_large, invalid_image, ...).",
            ["reason"],
            registry=r,
        )
        self.timed_out = Counter(
            "abpn_requests_timed_out",
            "Requests still queued at their deadline (answered 504, never computed).",
            registry=r,
        )
        self.cancelled = Counter(
            "abpn_requests_cancelled",
            "Requests whose client went away, by the stage they were in; those cancelled while "
            "queued or before were never computed.",
            ["stage"],
            registry=r,
        )
        self.process_restarts = Counter(
            "abpn_process_restarts",
            "Child processes replaced, by process (replica, face_worker) and reason (timeout: "
            "a batch ran past ABPN_BATCH_TIMEOUT_S, or a face parse past ABPN_FACES_TIMEOUT_S, "
            "and it was killed; died).",
            ["process", "reason"],
            registry=r,
        )
        self.model_info = Gauge(
            "abpn_model_info",
            "The served model (always 1).",
            self._model_labels,
            registry=r,
        )

    def serving(self, name: str, version: str, sha256: str) -> None:
        """Set abpn_model_info for the loaded weights (the hash only where it is a label)."""
        values = {"name": name, "version": version, "weights_sha256": sha256}
        self.model_info.labels(*(values[label] for label in self._model_labels)).set(1)

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)
