"""The BentoML service: ``bentoml serve serving.service:ChaintradeService``.

Answers ``POST /predict`` with body ``{"bar": {...}}`` (one closed bar) using the MLflow
``champion`` model over Feast online features. Errors carry a reason code and a 4xx status.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import bentoml

from chaintrade.chain import ChainContext
from chaintrade.errors import ChaintradeError
from chaintrade.schemas import BarIn, Prediction
from chaintrade.settings import get_settings
from serving.predictor import Predictor

_STATUS = {
    "not_enough_history": HTTPStatus.CONFLICT,
    "stale_features": HTTPStatus.CONFLICT,
    "bar_out_of_order": HTTPStatus.CONFLICT,
    "invalid_features": HTTPStatus.UNPROCESSABLE_ENTITY,
}


class PredictionRefused(bentoml.exceptions.BentoMLException):
    """A request the service will not answer; the message starts with the reason code."""


class BearerAuth:
    """ASGI middleware: every path but health checks needs ``Authorization: Bearer <token>``."""

    OPEN_PATHS = ("/livez", "/readyz", "/healthz", "/metrics", "/docs", "/docs.json")

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(self.OPEN_PATHS):
            headers = dict(scope.get("headers") or [])
            if headers.get(b"authorization") != self.expected:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                body = b'{"error": "unauthorized: send Authorization: Bearer <token>"}'
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


@bentoml.service(name="chaintrade", traffic={"timeout": 30})
class ChaintradeService:
    """Online predictions of the champion model."""

    def __init__(self) -> None:
        self.settings = get_settings()
        self.predictor = Predictor(self.settings)
        self.writer = None
        if self.settings.db_url:
            from chaintrade.chain_store import ChainWriter

            self.writer = ChainWriter(
                self.settings.db_url, spool_dir=self.settings.spool_dir / "serving"
            )

    @bentoml.api
    def predict(self, bar: BarIn, ctx: bentoml.Context) -> Prediction:
        """Predict the next move of ``bar.symbol`` from the bar that just closed."""
        if self.writer is None:
            return self._predict(bar)
        chain = ChainContext.from_headers(self.writer, dict(ctx.request.headers))
        with chain.step("serving", "/predict") as step:
            prediction = self._predict(bar)
            step.metrics.update(prediction.timings_ms)
            step.metadata.update(model_version=prediction.model_version, symbol=bar.symbol)
            return prediction

    def _predict(self, bar: BarIn) -> Prediction:
        try:
            return self.predictor.predict(bar)
        except ChaintradeError as exc:
            status = _STATUS.get(exc.reason, HTTPStatus.BAD_REQUEST)
            raise PredictionRefused(f"{exc.reason}: {exc}", error_code=status) from exc

    @bentoml.api(route="/model")
    def model(self) -> dict[str, Any]:
        """The model version being served."""
        m = self.predictor.model
        return {"name": m.name, "version": m.version, "confidence": m.confidence}


_token = get_settings().serving_token
if _token is not None:
    ChaintradeService.add_asgi_middleware(BearerAuth, token=_token.get_secret_value())  # type: ignore[attr-defined]
