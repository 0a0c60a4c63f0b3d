-- Chain tracing, part 2: lighter write path, the definitions registry, Grafana views,
-- and on TimescaleDB compression, retention and continuous aggregates.
--
-- Write path: the seed's (service_name, event_type, "timestamp" DESC) index cost about
-- half of the insert throughput (inserts land at the head of each of the few service
-- groups, splitting pages in the middle): 62 k -> 123 k events/s on PostgreSQL 15 with
-- it dropped (benchmarks/bench_chain.py). Per-service time series are served by the
-- views below (continuous aggregates on TimescaleDB, where chunks bound every scan by
-- time); errors, which the per-service queries look for, keep a small partial index.

DROP INDEX IF EXISTS chain_history_service_event_idx;
CREATE INDEX IF NOT EXISTS chain_history_errors_idx
    ON chain_history (service_name, "timestamp") WHERE event_type = 'error';

-- The registry: one row per chain *kind* (e.g. 'bar'); chain_id is uuid5 of the name.
CREATE UNIQUE INDEX IF NOT EXISTS chain_definitions_name_idx
    ON chain_definitions (chain_name) WHERE is_active;

-- One row per chain: span, services, errors, total step time.
CREATE OR REPLACE VIEW chain_summary AS
SELECT chain_id,
       min("timestamp") AS started_at,
       max("timestamp" + make_interval(secs => coalesce(duration_ms, 0) / 1000.0)) AS ended_at,
       extract(epoch FROM max("timestamp" + make_interval(secs => coalesce(duration_ms, 0) / 1000.0))
                          - min("timestamp")) * 1000.0 AS span_ms,
       count(*) AS events,
       count(DISTINCT service_name) AS services,
       count(*) FILTER (WHERE event_type = 'error') AS errors,
       sum(coalesce(duration_ms, 0)) AS step_ms,
       array_agg(service_name ORDER BY "timestamp", service_name) AS service_order
FROM chain_history
GROUP BY chain_id;

-- The topology of each chain as JSONB, for similarity by containment (@>, <@).
CREATE OR REPLACE VIEW chain_topology AS
SELECT chain_id,
       min("timestamp") AS started_at,
       jsonb_build_object(
           'services', jsonb_agg(DISTINCT service_name),
           'targets', coalesce(
               (SELECT jsonb_agg(DISTINCT d ->> 'target')
                FROM chain_history h2, jsonb_array_elements(h2.dependencies) d
                WHERE h2.chain_id = h.chain_id), '[]'::jsonb)
       ) AS topology
FROM chain_history h
GROUP BY chain_id;

-- Per-service step statistics per time bucket: chain_service_stats_{1m,5m,15m,1h,1d}.
-- TimescaleDB: continuous aggregates refreshed by policy. Plain PostgreSQL: views over
-- chain_history with the same names and columns (always current; bound the time range).
DO $$
DECLARE
    spec text[];
    specs text[][] := ARRAY[
        ARRAY['1m', '1 minute',  '1 hour',   '1 minute'],
        ARRAY['5m', '5 minutes', '3 hours',  '5 minutes'],
        ARRAY['15m','15 minutes','6 hours',  '15 minutes'],
        ARRAY['1h', '1 hour',    '2 days',   '1 hour'],
        ARRAY['1d', '1 day',     '7 days',   '1 day']];
    ts boolean := false;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables '
                'WHERE hypertable_name = ''chain_history'')' INTO ts;
    END IF;
    FOREACH spec SLICE 1 IN ARRAY specs LOOP
        IF ts THEN
            EXECUTE format(
                'CREATE MATERIALIZED VIEW chain_service_stats_%s '
                'WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS '
                'SELECT time_bucket(%L::interval, "timestamp") AS bucket, service_name, '
                'count(*) AS events, count(*) FILTER (WHERE event_type = ''error'') AS errors, '
                'avg(duration_ms) AS avg_ms, min(duration_ms) AS min_ms, '
                'max(duration_ms) AS max_ms, sum(duration_ms) AS sum_ms '
                'FROM chain_history GROUP BY 1, 2 WITH NO DATA', spec[1], spec[2]);
            PERFORM add_continuous_aggregate_policy(
                format('chain_service_stats_%s', spec[1])::regclass,
                start_offset => spec[3]::interval, end_offset => NULL,
                schedule_interval => spec[4]::interval);
        ELSE
            EXECUTE format(
                'CREATE OR REPLACE VIEW chain_service_stats_%s AS '
                'SELECT date_bin(%L::interval, "timestamp", TIMESTAMPTZ ''2000-01-01'') AS bucket, '
                'service_name, count(*) AS events, '
                'count(*) FILTER (WHERE event_type = ''error'') AS errors, '
                'avg(duration_ms) AS avg_ms, min(duration_ms) AS min_ms, '
                'max(duration_ms) AS max_ms, sum(duration_ms) AS sum_ms '
                'FROM chain_history GROUP BY 1, 2', spec[1], spec[2]);
        END IF;
    END LOOP;

    IF ts THEN
        -- Compress week-old chunks (segment by service: Grafana filters on it), drop
        -- raw events after 90 days; the 1h/1d aggregates are kept (no policy on them).
        ALTER TABLE chain_history SET (timescaledb.compress,
            timescaledb.compress_segmentby = 'service_name',
            timescaledb.compress_orderby = '"timestamp" DESC');
        PERFORM add_compression_policy('chain_history', INTERVAL '7 days', if_not_exists => TRUE);
        PERFORM add_retention_policy('chain_history', INTERVAL '90 days', if_not_exists => TRUE);
        ALTER TABLE chain_metrics SET (timescaledb.compress,
            timescaledb.compress_segmentby = 'metric_name',
            timescaledb.compress_orderby = '"timestamp" DESC');
        PERFORM add_compression_policy('chain_metrics', INTERVAL '30 days', if_not_exists => TRUE);
        PERFORM add_retention_policy('chain_metrics', INTERVAL '365 days', if_not_exists => TRUE);
    END IF;
END
$$;

-- Latency percentiles per service (raw events; bound the time range in the query).
CREATE OR REPLACE VIEW chain_service_latency AS
SELECT service_name, "timestamp", duration_ms, event_type, chain_id
FROM chain_history;

-- Dependency calls flattened: one row per call, for charts of retries and failures.
CREATE OR REPLACE VIEW chain_dependency_calls AS
SELECT h."timestamp", h.chain_id, h.service_name,
       d ->> 'target' AS target, d ->> 'endpoint' AS endpoint,
       (d ->> 'attempt')::int AS attempt, (d ->> 'duration_ms')::float8 AS duration_ms,
       d ->> 'status' AS status, d ->> 'error' AS error
FROM chain_history h, jsonb_array_elements(h.dependencies) d;
