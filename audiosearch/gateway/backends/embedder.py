"""The gateway's view of the embedder: Triton's KServe v2 gRPC protocol, model `panns_cnn14`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import grpc
import numpy as np
import tritonclient.grpc as triton
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from audiosearch.common.channels import CHANNEL_OPTIONS
from audiosearch.common.errors import Unavailable
from audiosearch.common.tls import ClientTls
from audiosearch.common.tracing import trace_headers, tracer
from audiosearch.gateway import metrics
from audiosearch.gateway.backends.admission import PRIORITY_LEVELS, Admission, BackgroundLimits, Work
from audiosearch.v1 import audiosearch_pb2 as pb

MODEL_NAME = "panns_cnn14"
WAVEFORM_INPUT = "waveform"
# The wire datatypes of the waveform the gateway can send, each with the one to try when an embedder refuses it.
_OTHER_WIRE_DATATYPE = {"FP16": "FP32", "FP32": "FP16"}
_SERVED_MODEL_TTL_SECONDS = 30.0


def triton_client(url: str, tls: ClientTls | None = None) -> triton.InferenceServerClient:
    """A Triton gRPC client, over TLS (mTLS with a client certificate) when `tls` is given."""
    if tls is None:
        return triton.InferenceServerClient(url=url, channel_args=CHANNEL_OPTIONS)
    return triton.InferenceServerClient(url=url, channel_args=[*CHANNEL_OPTIONS, *tls.options()],
                                        **tls.triton_arguments())


@dataclass(frozen=True)
class ServedModel:
    """What the gateway reads from the model config Triton serves."""

    identity: pb.ModelIdentity
    max_batch_size: int
    waveform_datatype: str  # KServe datatype of the `waveform` input: FP16 or FP32
    priority_levels: int = 0  # of Triton's dynamic batcher; 0: requests are sent without a priority

    def priority(self, work: Work) -> int:
        return int(work) if self.priority_levels >= PRIORITY_LEVELS else 0


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # float32 (n, dim), L2-normalised
    tag_probabilities: np.ndarray  # float32 (n, 527)


class EmbedderClient:
    def __init__(self, url: str, timeout_seconds: float, max_parallel_requests: int = 8,
                 tls: ClientTls | None = None, background: BackgroundLimits | None = None) -> None:
        # `dns:///embedder-headless:8001` spreads requests over every embedder pod.
        self._client = triton_client(url, tls)
        self._timeout_seconds = timeout_seconds
        self._pool = ThreadPoolExecutor(max_parallel_requests, thread_name_prefix="embed")
        self._background = background or BackgroundLimits()
        self._admission = Admission(self._background.parallel_requests, self._background.max_wait_seconds)
        self._served: ServedModel | None = None
        self._served_read_at = 0.0
        self._lock = threading.Lock()

    def model_identity(self) -> pb.ModelIdentity:
        """The identity of the model Triton serves now (cached briefly; a restarted embedder is noticed)."""
        return self.served_model().identity

    def served_model(self) -> ServedModel:
        with self._lock:
            if self._served is None or time.monotonic() - self._served_read_at > _SERVED_MODEL_TTL_SECONDS:
                self._served = self._read_model_config()
                self._served_read_at = time.monotonic()
            return self._served

    def is_ready(self) -> bool:
        try:
            return bool(self._client.is_model_ready(MODEL_NAME, client_timeout=2.0))
        except InferenceServerException:
            return False

    def embed(self, windows: np.ndarray, work: Work = Work.INTERACTIVE) -> Embeddings:
        """Embeds (n, samples) windows as `work`. Interactive windows that fit one batch are sent at once; anything
        else goes in chunks, admitted in turn (admission.py)."""
        served = self.served_model()
        # The pool's threads do not inherit the caller's context: hand them the request's trace explicitly.
        infer = partial(self._infer, datatype=served.waveform_datatype, priority=served.priority(work),
                        parent=otel_context.get_current())
        if work is Work.INTERACTIVE and len(windows) <= served.max_batch_size:
            metrics.EMBED_ADMISSION_WAIT.labels(work.name.lower()).observe(0.0)
            with self._admission.interactive():
                results = [infer(windows)]
        else:
            chunk = min(self._background.chunk_windows, served.max_batch_size)
            results = self._chunked(infer, [windows[start : start + chunk] for start in range(0, len(windows), chunk)],
                                    work)
        return Embeddings(
            np.concatenate([vectors for vectors, _ in results]),
            np.concatenate([tags for _, tags in results]),
        )

    def _chunked(self, infer: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], chunks: list[np.ndarray],
                 work: Work) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each chunk waits for admission in the caller's thread, so the pool's threads only ever run admitted
        requests (a crowd of waiting chunks cannot hold them from a search)."""
        futures: list[Future[tuple[np.ndarray, np.ndarray]]] = []
        try:
            for windows in chunks:
                waited = self._admission.enter_background(work)
                metrics.EMBED_ADMISSION_WAIT.labels(work.name.lower()).observe(waited)
                try:
                    future = self._pool.submit(infer, windows)
                except BaseException:
                    self._admission.leave_background()
                    raise
                future.add_done_callback(lambda _: self._admission.leave_background())
                futures.append(future)
            return [future.result() for future in futures]
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._client.close()

    def _infer(self, windows: np.ndarray, datatype: str, priority: int = 0,
               parent: otel_context.Context | None = None) -> tuple[np.ndarray, np.ndarray]:
        metrics.EMBED_BATCH_SIZE.observe(len(windows))
        try:
            # `traceparent` as gRPC metadata: Triton started with --trace-config mode=opentelemetry joins the trace.
            with (
                tracer.start_as_current_span(f"triton {MODEL_NAME} infer", context=parent, kind=SpanKind.CLIENT,
                                             attributes={"embedder.batch_size": len(windows)}),
                metrics.EMBED_DURATION.time(),
            ):
                return self._infer_as(windows, datatype, priority)
        except InferenceServerException as error:
            metrics.EMBED_ERRORS.inc()
            raise Unavailable(f"the embedder failed: {error.message()}", reason="DEPENDENCY_UNAVAILABLE",
                              dependency="embedder") from error

    def _infer_as(self, windows: np.ndarray, datatype: str, priority: int) -> tuple[np.ndarray, np.ndarray]:
        """Sends in `datatype`; while a rolling update changes it, the pods behind one address disagree, and a pod
        that refuses the datatype (INVALID_ARGUMENT) is answered by sending again: in the other datatype twice, as
        the next pod in the round may be one of the kind that wanted the first, then in the first once more, for a
        fleet mostly of that kind. Inference is idempotent; the first refusal is the one reported."""
        other = _OTHER_WIRE_DATATYPE[datatype]
        refusals: list[InferenceServerException] = []
        for attempt in (datatype, other, other, datatype):
            try:
                return self._send(windows, attempt, priority)
            except InferenceServerException as error:
                if error.status() != str(grpc.StatusCode.INVALID_ARGUMENT):
                    raise
                metrics.EMBED_DATATYPE_REFUSALS.inc()
                refusals.append(error)
        raise refusals[0]

    def _send(self, windows: np.ndarray, datatype: str, priority: int) -> tuple[np.ndarray, np.ndarray]:
        waveform = triton.InferInput(WAVEFORM_INPUT, list(windows.shape), datatype)
        waveform.set_data_from_numpy(np.ascontiguousarray(windows, dtype=triton_to_np_dtype(datatype)))
        outputs = [triton.InferRequestedOutput("embedding"), triton.InferRequestedOutput("tags")]
        result = self._client.infer(MODEL_NAME, [waveform], outputs=outputs, client_timeout=self._timeout_seconds,
                                    headers=trace_headers(), priority=priority)
        return result.as_numpy("embedding"), result.as_numpy("tags")

    def _read_model_config(self) -> ServedModel:
        try:
            config = self._client.get_model_config(MODEL_NAME, client_timeout=5.0).config
        except InferenceServerException as error:
            raise Unavailable(f"the embedder is unreachable: {error.message()}", reason="DEPENDENCY_UNAVAILABLE",
                              dependency="embedder") from error
        parameters = {key: value.string_value for key, value in config.parameters.items()}
        identity = pb.ModelIdentity(
            name=parameters.get("model_name", MODEL_NAME),
            version=parameters["model_version"],
            embedding_dim=int(parameters["embedding_dim"]),
            sample_rate_hz=int(parameters["sample_rate"]),
            untrained=parameters.get("untrained", "false").lower() == "true",
        )
        return ServedModel(identity, config.max_batch_size or 64, waveform_datatype(config),
                           config.dynamic_batching.priority_levels)


def waveform_datatype(config: model_config_pb2.ModelConfig) -> str:
    """The KServe datatype (FP16 or FP32) the served config declares for the `waveform` input."""
    declared = [tensor.data_type for tensor in config.input if tensor.name == WAVEFORM_INPUT]
    name = model_config_pb2.DataType.Name(declared[0]).removeprefix("TYPE_") if declared else "none"
    if name not in _OTHER_WIRE_DATATYPE:
        raise Unavailable(f"the embedder's {MODEL_NAME} declares waveform input {name}; the gateway sends FP16 or "
                          "FP32", reason="DEPENDENCY_UNAVAILABLE", dependency="embedder")
    return name


def same_model(left: pb.ModelIdentity, right: pb.ModelIdentity) -> bool:
    return (left.name, left.version, left.embedding_dim, left.sample_rate_hz) == (
        right.name, right.version, right.embedding_dim, right.sample_rate_hz)
