"""The BentoML service: ``bentoml serve serving.service:ChaintradeService``.

Endpoints (OpenAPI at ``/docs``): ``POST /predict`` ``{"bar": {...}}`` (one closed bar),
``POST /predict_symbol`` ``{"request": {"symbol": "EURUSD"}}`` (latest online features),
``POST /model``; BentoML's ``/livez``, ``/readyz`` and ``/metrics``. A refused request
gets 4xx with ``{"error": "<reason>: <message>"}`` and the model is never called.
"""

from __future__ import annotations

import gc
import logging
from http import HTTPStatus
from typing import Any

import anyio
import bentoml

from chaintrade.chain import ChainContext
from chaintrade.errors import ChaintradeError
from chaintrade.schemas import BarIn, Prediction, SymbolIn
from chaintrade.settings import get_settings
from serving import metrics
from serving.middleware import BearerAuth, BodyLimit
from serving.predictor import SERVICE_NAME, Predictor
from serving.settings import get_serving_settings

log = logging.getLogger(__name__)

STATUS = {
    "not_enough_history": HTTPStatus.CONFLICT,
    "stale_features": HTTPStatus.CONFLICT,
    "no_online_features": HTTPStatus.CONFLICT,
    "bar_out_of_order": HTTPStatus.CONFLICT,
    "invalid_features": HTTPStatus.UNPROCESSABLE_ENTITY,
    "timeframe_mismatch": HTTPStatus.UNPROCESSABLE_ENTITY,
    "bar_not_closed": HTTPStatus.UNPROCESSABLE_ENTITY,
    "model_unavailable": HTTPStatus.SERVICE_UNAVAILABLE,
}


class PredictionRefused(bentoml.exceptions.BentoMLException):
    """A request the service will not answer; the message starts with the reason code."""


HOT_PATHS = ["/predict", "/predict_symbol"]
_serving = get_serving_settings()


@bentoml.service(
    name="chaintrade",
    traffic={"timeout": 30},
    workers=1,
    logging={"access": {"enabled": _serving.access_log}},
    tracing={"excluded_urls": [] if _serving.trace_requests else HOT_PATHS},
)
class ChaintradeService:
    """Online predictions of the champion ensemble."""

    def __init__(self) -> None:
        metrics.follow_multiprocess_mode()  # before any metric gets a value
        self.settings = get_settings()
        self.serving = get_serving_settings()
        self.predictor = Predictor(self.settings, self.serving)
        self.writer: Any = None
        if self.settings.db_url:
            from chaintrade.chain_store import ChainWriter

            self.writer = ChainWriter(
                self.settings.db_url, spool_dir=self.settings.spool_dir / SERVICE_NAME
            )
        # Everything loaded so far (MLflow, Feast, pandas, the model: ~10^6 objects) lives as
        # long as the process: keep it out of the cyclic GC, whose full passes would otherwise
        # walk it all in the middle of a request (pauses of several ms).
        gc.collect()
        gc.freeze()

    # ``async``: the work is ~0.3 ms of CPU, cheaper inline on the event loop than handed to a
    # thread pool (a GIL hand-off between threads can cost the 5 ms switch interval).
    @bentoml.api
    async def predict(self, bar: BarIn, ctx: bentoml.Context) -> Prediction:
        """Predict the next move of ``bar.symbol`` from the bar that just closed."""
        args = (
            self._headers(ctx),
            "/predict",
            bar.symbol,
            lambda c: self.predictor.predict(bar, c),
        )
        if self.predictor.needs_history(bar.symbol, bar.timeframe):
            # The symbol's first bar reads its history from the lake: off the event loop,
            # so requests of other symbols go on meanwhile.
            return await anyio.to_thread.run_sync(self._traced, *args)
        return self._traced(*args)

    @bentoml.api
    async def predict_symbol(self, request: SymbolIn, ctx: bentoml.Context) -> Prediction:
        """Predict from the latest online features of a symbol (no bar sent)."""
        return self._traced(
            self._headers(ctx),
            "/predict_symbol",
            request.symbol,
            lambda c: self.predictor.predict_symbol(request.symbol, request.timeframe, c),
        )

    @bentoml.api(route="/model")
    def model(self) -> dict[str, Any]:
        """The champion being served: name, version, members, timeframe and features."""
        m = self.predictor.model
        return {
            "name": m.name,
            "version": m.version,
            "confidence": m.confidence,
            "timeframe": m.timeframe,
            "members": {x.spec.name: x.confidence for x in m.ensemble.members},
            "features": list(m.feature_names),
            "last_reload_error": self.predictor.holder.last_error,
        }

    def __is_ready__(self) -> bool:
        writer = self.predictor.writer
        return writer is None or writer.alive

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self.predictor.close()
        if self.writer is not None:
            self.writer.close()

    def _headers(self, ctx: bentoml.Context) -> dict[str, str]:
        """The request's headers, read only when there is a chain to continue."""
        return dict(ctx.request.headers) if self.writer is not None else {}

    def _traced(self, headers: dict[str, str], endpoint: str, symbol: str, call: Any) -> Prediction:
        if self.writer is None:
            return self._refusing(call, None)
        chain = ChainContext.from_headers(self.writer, headers)
        with chain.step(SERVICE_NAME, endpoint) as step:
            step.metadata["symbol"] = symbol
            prediction = self._refusing(call, chain)
            step.metrics.update(prediction.timings_ms)
            step.metadata.update(model_version=prediction.model_version, cached=prediction.cached)
            return prediction

    @staticmethod
    def _refusing(call: Any, chain: ChainContext | None) -> Prediction:
        try:
            prediction: Prediction = call(chain)
            return prediction
        except ChaintradeError as exc:
            metrics.REFUSED.labels(exc.reason).inc()
            status = STATUS.get(exc.reason, HTTPStatus.BAD_REQUEST)
            raise PredictionRefused(f"{exc.reason}: {exc}", error_code=status) from exc


ChaintradeService.add_asgi_middleware(BodyLimit, max_bytes=_serving.max_body_bytes)  # type: ignore[attr-defined]
_token = get_settings().serving_token
if _token is not None:
    ChaintradeService.add_asgi_middleware(BearerAuth, token=_token.get_secret_value())  # type: ignore[attr-defined]
