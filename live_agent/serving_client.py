"""HTTP client for the serving ``/predict`` endpoint, with chain headers and bounded retries."""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any

import httpx
from pydantic import SecretStr, ValidationError
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from chaintrade.chain import ChainContext, StepTrace
from chaintrade.errors import FatalError, RetryableError, ServiceUnavailable
from chaintrade.schemas import BarIn, Prediction

SERVICE_NAME = "live_agent"
PREDICT_PATH = "/predict"


class PredictionRejected(FatalError):
    """Serving answered 4xx: the request is wrong; ``reason`` is the server's reason code."""

    reason = "prediction_rejected"


class InvalidPrediction(FatalError):
    """Serving answered 2xx with a body that is not a valid :class:`Prediction`."""

    reason = "invalid_prediction"


class _TransientFailure(RetryableError):
    """A connection error, timeout or 5xx answer: worth another attempt."""

    reason = "serving_transient"


class ServingClient:
    """``POST {base_url}/predict`` with ``{"bar": BarIn}``; one reused ``httpx.Client``."""

    def __init__(
        self,
        base_url: str,
        *,
        token: SecretStr | str | None = None,
        timeout_s: float = 2.0,
        retries: int = 2,
        backoff_s: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``retries`` is the number of further attempts after the first one."""
        headers = {"Accept": "application/json"}
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
        )
        self._attempts = retries + 1
        self._backoff_s = backoff_s

    def predict(self, bar: BarIn, chain: ChainContext, trace: StepTrace) -> Prediction:
        """The ensemble's prediction for ``bar``; every attempt is a dependency of ``trace``.

        Raises :class:`PredictionRejected` (4xx) or :class:`InvalidPrediction` (bad body),
        both fatal, or :class:`ServiceUnavailable` once connection errors, timeouts or 5xx
        answers have used up the retries.
        """
        body = {"bar": bar.model_dump(mode="json")}
        # X-Symbol lets a load balancer keep each symbol on one replica (its bar buffer).
        headers = {**chain.headers(SERVICE_NAME), "X-Symbol": bar.symbol}
        attempt = 0
        retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._backoff_s, max=max(self._backoff_s * 8, 0.0)),
            retry=retry_if_exception_type(_TransientFailure),
            reraise=False,
        )
        try:
            for try_ in retrying:
                with try_:
                    attempt += 1
                    try:
                        with trace.dependency("serving", PREDICT_PATH, attempt):
                            prediction = _parse(self._post(body, headers), bar.symbol)
                    except TimeoutError as exc:
                        raise _TransientFailure(str(exc)) from exc
                    return prediction
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise ServiceUnavailable(
                f"serving unavailable after {attempt} attempt(s): {last}",
                reason="serving_unavailable",
            ) from last
        raise AssertionError("unreachable")  # pragma: no cover

    def _post(self, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        try:
            response = self._client.post(PREDICT_PATH, json=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"serving timed out: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise _TransientFailure(f"serving unreachable: {exc!r}") from exc
        if response.status_code >= 500:
            raise _TransientFailure(f"serving answered {response.status_code}: {_reason(response)}")
        return response

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _parse(response: httpx.Response, symbol: str) -> Prediction:
    if response.status_code >= 400:
        reason = _reason(response)
        raise PredictionRejected(
            f"serving rejected the request ({response.status_code}): {reason}", reason=reason
        )
    try:
        prediction = Prediction.model_validate_json(response.content)
    except ValidationError as exc:
        raise InvalidPrediction(f"serving sent an invalid prediction: {exc}") from exc
    if prediction.symbol != symbol:
        raise InvalidPrediction(f"prediction for {prediction.symbol!r}, asked for {symbol!r}")
    return prediction


def _reason(response: httpx.Response) -> str:
    """The server's reason code: ``reason``/``error``/``detail`` of a JSON body, else HTTP_n."""
    try:
        payload = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict):
        for key in ("reason", "error", "detail"):
            value = payload.get(key)
            if isinstance(value, str) and value:
                return value
    return f"http_{response.status_code}"
