"""The panns_cnn14 model for Triton's Python backend: one engine per model instance, loaded in `initialize`.

Imported only inside the backend stub, where `triton_python_backend_utils` exists.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

from audiosearch.common.logs import configure_logging
from audiosearch.embedder.engine import Embedder, EmbeddingBatch, InputError
from audiosearch.embedder.identity import WAVEFORM_INPUT
from audiosearch.embedder.instance import InstancePlan, device_for_instance, parameters_from_model_config

LOG = logging.getLogger("audiosearch.embedder.model")


def _check_interpreter() -> None:
    # The stub's embedded Python takes its prefix from `python3` on PATH. With another interpreter's numpy 2
    # the backend returns empty output tensors without any error, so refuse to load instead.
    if int(np.__version__.split(".")[0]) >= 2:
        raise RuntimeError(
            f"the Triton Python stub runs {sys.prefix} with numpy {np.__version__}; it needs numpy<2. "
            "Start it through `python -m audiosearch.embedder.server`, which puts the right interpreter first "
            "on PATH."
        )


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        configure_logging("embedder", os.environ.get("EMBEDDER_LOG_LEVEL", "INFO"))
        _check_interpreter()
        config = json.loads(args["model_config"])
        parameters = parameters_from_model_config(config)
        plan = InstancePlan.from_parameters(parameters)
        device = device_for_instance(args["model_instance_kind"], args["model_instance_device_id"])
        self.instance = args["model_instance_name"]
        self.embedder = Embedder.load(plan.weights(), plan.runtime(device))
        served = str(self.embedder.identity)
        if served != parameters.get("model_identity"):
            raise RuntimeError(
                f"model identity mismatch: the config announces {parameters.get('model_identity')!r} but "
                f"this instance loaded {served!r}; regenerate the model repository with the launcher"
            )
        LOG.info(
            "model instance ready", extra={"instance": self.instance, "identity": served, "device": device}
        )

    def execute(self, requests: list) -> list:
        waveforms = [
            pb_utils.get_input_tensor_by_name(request, WAVEFORM_INPUT).as_numpy() for request in requests
        ]
        try:
            results = self.embedder.embed_many(waveforms)
        except Exception as error:  # a failed batch must answer every request, not kill the instance
            LOG.exception("inference failed", extra={"instance": self.instance, "requests": len(requests)})
            return [_error_response(f"embedding failed: {error}") for _ in requests]
        return [_response(result) for result in results]

    def finalize(self) -> None:
        LOG.info("model instance unloaded", extra={"instance": getattr(self, "instance", "?")})


def _error_response(message: str) -> object:
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))


def _response(result: EmbeddingBatch | InputError) -> object:
    if isinstance(result, InputError):
        return _error_response(f"invalid waveform: {result}")
    return pb_utils.InferenceResponse(
        output_tensors=[pb_utils.Tensor("embedding", result.embeddings), pb_utils.Tensor("tags", result.tags)]
    )
