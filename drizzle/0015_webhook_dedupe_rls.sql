-- Row-level security for webhook_dedupe_keys (see 0001 and 0004 for the mechanism): account data,
-- written by ingress inside the automation's account scope.
GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_dedupe_keys TO switchboard_app;
--> statement-breakpoint
ALTER TABLE webhook_dedupe_keys ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE webhook_dedupe_keys FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY account_scope ON webhook_dedupe_keys TO switchboard_app
  USING (account_id = ANY ((SELECT app_account_ids())::uuid[])) WITH CHECK (account_id = ANY ((SELECT app_account_ids())::uuid[]));
--> statement-breakpoint
DO $$ BEGIN EXECUTE format('CREATE POLICY service_all ON webhook_dedupe_keys TO %I USING (true) WITH CHECK (true)', current_user); END $$;
