-- TimescaleDB when the server has it: hypertables for the time-series tables.
-- On plain PostgreSQL this does nothing (the tables stay ordinary tables).
-- TimescaleDB must also be in shared_preload_libraries, or CREATE EXTENSION fails;
-- when it is available but not preloaded we warn and leave the tables plain.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        RAISE NOTICE 'timescaledb is not available: plain PostgreSQL tables';
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
       AND coalesce(current_setting('shared_preload_libraries', true), '') NOT LIKE '%timescaledb%' THEN
        RAISE WARNING 'timescaledb is available but not in shared_preload_libraries: '
                      'plain PostgreSQL tables (preload it and run a new migration to convert)';
        RETURN;
    END IF;
    CREATE EXTENSION IF NOT EXISTS timescaledb;
    PERFORM create_hypertable('chain_history', 'timestamp',
                              chunk_time_interval => INTERVAL '1 day',
                              if_not_exists => TRUE, migrate_data => TRUE);
    PERFORM create_hypertable('chain_metrics', 'timestamp',
                              chunk_time_interval => INTERVAL '7 days',
                              if_not_exists => TRUE, migrate_data => TRUE);
    PERFORM create_hypertable('market_data', 'time',
                              chunk_time_interval => INTERVAL '30 days',
                              if_not_exists => TRUE, migrate_data => TRUE);
END
$$;
