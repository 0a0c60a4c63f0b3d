-- Monitoring: alerts raised by the performance monitor and the feedback loop, and live
-- (post-trade) model metrics. TIMESTAMPTZ everywhere; the time column is in every
-- primary key, so both tables can become hypertables on TimescaleDB.

CREATE TABLE IF NOT EXISTS monitoring_alerts (
    alert_id    UUID NOT NULL,
    raised_at   TIMESTAMPTZ NOT NULL,
    reason      VARCHAR(64) NOT NULL,
    severity    VARCHAR(16) NOT NULL,
    subject     VARCHAR(255) NOT NULL,
    message     TEXT NOT NULL,
    value       DOUBLE PRECISION,
    threshold   DOUBLE PRECISION,
    details     JSONB NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (alert_id, raised_at)
);
CREATE INDEX IF NOT EXISTS monitoring_alerts_time_idx ON monitoring_alerts (raised_at DESC);
CREATE INDEX IF NOT EXISTS monitoring_alerts_reason_idx ON monitoring_alerts (reason, raised_at DESC);

CREATE TABLE IF NOT EXISTS live_model_metrics (
    model_name    VARCHAR(255) NOT NULL,
    model_version VARCHAR(64) NOT NULL,
    metric_name   VARCHAR(100) NOT NULL,
    measured_at   TIMESTAMPTZ NOT NULL,
    metric_value  DOUBLE PRECISION NOT NULL,
    window_start  TIMESTAMPTZ,
    window_end    TIMESTAMPTZ,
    samples       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (model_name, model_version, metric_name, measured_at)
);
CREATE INDEX IF NOT EXISTS live_model_metrics_time_idx ON live_model_metrics (measured_at DESC);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('monitoring_alerts', 'raised_at', if_not_exists => TRUE,
                                  migrate_data => TRUE);
        PERFORM create_hypertable('live_model_metrics', 'measured_at', if_not_exists => TRUE,
                                  migrate_data => TRUE);
    END IF;
END
$$;
