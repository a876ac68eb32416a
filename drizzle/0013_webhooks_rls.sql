-- Row-level security for webhook_deliveries (see 0001 and 0004 for the mechanism): account data.
-- Ingress finds the automation by its token hash on the privileged path, then records the
-- delivery and its run inside that automation's account scope.
GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_deliveries TO switchboard_app;
--> statement-breakpoint
ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY account_scope ON webhook_deliveries TO switchboard_app
  USING (account_id = ANY ((SELECT app_account_ids())::uuid[])) WITH CHECK (account_id = ANY ((SELECT app_account_ids())::uuid[]));
--> statement-breakpoint
DO $$ BEGIN EXECUTE format('CREATE POLICY service_all ON webhook_deliveries TO %I USING (true) WITH CHECK (true)', current_user); END $$;
