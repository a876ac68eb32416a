-- Row-level security for executions and execution_steps (see 0001 and 0004 for the mechanism):
-- account data. Workers claim across accounts on the privileged path, then run each execution's
-- reads and writes inside that execution's account scope.
GRANT SELECT, INSERT, UPDATE, DELETE ON executions, execution_steps TO switchboard_app;
--> statement-breakpoint
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['executions', 'execution_steps'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY account_scope ON %I TO switchboard_app USING (account_id = ANY ((SELECT app_account_ids())::uuid[])) WITH CHECK (account_id = ANY ((SELECT app_account_ids())::uuid[]))', t);
    EXECUTE format('CREATE POLICY service_all ON %I TO %I USING (true) WITH CHECK (true)', t, current_user);
  END LOOP;
END $$;
