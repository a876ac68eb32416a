-- check_health's roll-up (src/core/operations/health-rollup.ts). Its rows are written only on the
-- service path; the scoped role reads them under the account policy like every account table.
-- The markers hold no account data (a tenant, a window size, an hour); the scoped role may read
-- them, and changes them only through the trigger below (its function runs as its owner).
GRANT SELECT ON health_rollup_rows TO switchboard_app;
--> statement-breakpoint
GRANT SELECT ON health_rollups TO switchboard_app;
--> statement-breakpoint
ALTER TABLE health_rollup_rows ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE health_rollup_rows FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY account_scope ON health_rollup_rows TO switchboard_app USING (account_id = ANY ((SELECT app_account_ids())::uuid[])) WITH CHECK (account_id = ANY ((SELECT app_account_ids())::uuid[]));
--> statement-breakpoint
DO $$ BEGIN EXECUTE format('CREATE POLICY service_all ON health_rollup_rows TO %I USING (true) WITH CHECK (true)', current_user); END $$;
--> statement-breakpoint
-- A roll-up sums the buckets behind the live edge (before the hour before its as_of), which the
-- engine never writes again: runs count in the hour they end, deliveries in the hour they
-- arrive. Anything else that changes such a bucket (a run whose end was recorded an hour late, a
-- repair, a test; an insert, an update that sets or moves an hour, a delete, a truncate) makes
-- the tenant's roll-ups stale: their markers are set to the epoch, so no read uses them and the
-- worker computes them again within a minute (a marker already stale is left alone, so a bulk
-- write updates it once). The function first takes the tenant's roll-up lock shared, until its
-- transaction ends: a refresh takes it exclusively, so it waits for such writes to commit rather
-- than summing around them, and a write that starts during a refresh marks its result stale.
-- The WHENs keep the engine's own writes from calling the function at all, and retention's
-- deletes too: a bucket older than 840 hours (five 7-day windows: SILENCE_WINDOWS + 1 windows of
-- the longest size, src/core/operations/health-rollup.ts) is in no roll-up.
CREATE FUNCTION switchboard_stats_behind_edge() RETURNS trigger LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  t uuid;
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    UPDATE health_rollups SET as_of = 'epoch' WHERE as_of > 'epoch';
    RETURN NULL;
  END IF;
  t := CASE WHEN TG_OP = 'DELETE' THEN OLD.tenant_id ELSE NEW.tenant_id END;
  PERFORM pg_advisory_xact_lock_shared(hashtext('switchboard:health_rollup'), hashtext(t::text));
  UPDATE health_rollups SET as_of = 'epoch' WHERE tenant_id = t AND as_of > 'epoch';
  RETURN NULL;
END $$;
--> statement-breakpoint
REVOKE ALL ON FUNCTION switchboard_stats_behind_edge() FROM PUBLIC;
--> statement-breakpoint
DO $$
DECLARE tb text;
BEGIN
  FOREACH tb IN ARRAY ARRAY['execution_stats', 'delivery_stats'] LOOP
    EXECUTE format($t$CREATE TRIGGER %1$s_inserted_behind_edge AFTER INSERT ON %1$I FOR EACH ROW
      WHEN (NEW.hour < date_trunc('hour', now()) - interval '1 hour')
      EXECUTE FUNCTION switchboard_stats_behind_edge()$t$, tb);
    EXECUTE format($t$CREATE TRIGGER %1$s_updated_behind_edge AFTER UPDATE ON %1$I FOR EACH ROW
      WHEN (NEW.hour < date_trunc('hour', now()) - interval '1 hour' OR OLD.hour < date_trunc('hour', now()) - interval '1 hour')
      EXECUTE FUNCTION switchboard_stats_behind_edge()$t$, tb);
    EXECUTE format($t$CREATE TRIGGER %1$s_deleted_behind_edge AFTER DELETE ON %1$I FOR EACH ROW
      WHEN (OLD.hour < date_trunc('hour', now()) - interval '1 hour' AND OLD.hour >= date_trunc('hour', now()) - interval '840 hours')
      EXECUTE FUNCTION switchboard_stats_behind_edge()$t$, tb);
    EXECUTE format($t$CREATE TRIGGER %1$s_truncated AFTER TRUNCATE ON %1$I FOR EACH STATEMENT
      EXECUTE FUNCTION switchboard_stats_behind_edge()$t$, tb);
  END LOOP;
END $$;
