-- Bars as MT5's copy_rates_* gives them, plus symbol and timeframe ("H1", "M15", ...).
-- The primary key leads with (symbol, timeframe) and holds the time column, so it serves
-- per-series time-range reads and is a valid hypertable key.

CREATE TABLE market_data (
    symbol      TEXT NOT NULL,
    timeframe   TEXT NOT NULL,
    "time"      TIMESTAMPTZ NOT NULL,
    open        DOUBLE PRECISION NOT NULL,
    high        DOUBLE PRECISION NOT NULL,
    low         DOUBLE PRECISION NOT NULL,
    close       DOUBLE PRECISION NOT NULL,
    tick_volume BIGINT NOT NULL DEFAULT 0,
    spread      BIGINT NOT NULL DEFAULT 0,
    real_volume BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (symbol, timeframe, "time")
);
