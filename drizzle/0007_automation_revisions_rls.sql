-- Row-level security for automation_revisions (see 0001 and 0004 for the mechanism): account data,
-- seen and written by the scoped role only for the accounts of its scope.
GRANT SELECT, INSERT, UPDATE, DELETE ON automation_revisions TO switchboard_app;
--> statement-breakpoint
ALTER TABLE automation_revisions ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE automation_revisions FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY account_scope ON automation_revisions TO switchboard_app
  USING (account_id = ANY ((SELECT app_account_ids())::uuid[])) WITH CHECK (account_id = ANY ((SELECT app_account_ids())::uuid[]));
--> statement-breakpoint
DO $$ BEGIN EXECUTE format('CREATE POLICY service_all ON automation_revisions TO %I USING (true) WITH CHECK (true)', current_user); END $$;
--> statement-breakpoint
-- automations made before revisions existed get revision 1: a webhook trigger and no steps
INSERT INTO automation_revisions (automation_id, revision, tenant_id, account_id, name, definition, created_by, created_at)
SELECT id, 1, tenant_id, account_id, name, '{"trigger":{"type":"webhook"},"routing":null,"steps":[],"retries":{"max":3}}'::jsonb, created_by, created_at
FROM automations
ON CONFLICT DO NOTHING;
