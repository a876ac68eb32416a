-- check_health's roll-up (src/core/operations/health-rollup.ts). Its rows are written only on the
-- service path; the scoped role reads them under the account policy like every account table.
-- The markers hold no account data (a tenant, a window size, an hour); the scoped role may read
-- them and, through the trigger below, mark its own tenant's stale.
GRANT SELECT ON health_rollup_rows TO switchboard_app;
--> statement-breakpoint
GRANT SELECT, UPDATE ON health_rollups TO switchboard_app;
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
-- arrive. Anything else writing such a bucket (a run whose end was recorded an hour late, a
-- repair, a test) makes the tenant's roll-ups stale: their markers are set to the epoch, so no
-- read uses them and the worker computes them again within a minute (a marker already stale is
-- left alone, so a bulk write updates it once). The WHEN keeps the engine's own writes from
-- calling the function at all.
CREATE FUNCTION switchboard_stats_behind_edge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE health_rollups SET as_of = 'epoch' WHERE tenant_id = NEW.tenant_id AND as_of > 'epoch';
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER execution_stats_behind_edge AFTER INSERT OR UPDATE ON execution_stats FOR EACH ROW
  WHEN (NEW.hour < date_trunc('hour', now()) - interval '1 hour')
  EXECUTE FUNCTION switchboard_stats_behind_edge();
--> statement-breakpoint
CREATE TRIGGER delivery_stats_behind_edge AFTER INSERT OR UPDATE ON delivery_stats FOR EACH ROW
  WHEN (NEW.hour < date_trunc('hour', now()) - interval '1 hour')
  EXECUTE FUNCTION switchboard_stats_behind_edge();
