-- Row-level security for account_data (see 0001 and 0004 for the mechanism): account data, seen
-- and written by the scoped role only for the accounts of its scope.
-- keys compare byte by byte: a prefix is then one range of the primary key, whatever the
-- database's default collation (a linguistic one interleaves punctuation)
ALTER TABLE account_data ALTER COLUMN key TYPE text COLLATE "C";
--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE, DELETE ON account_data TO switchboard_app;
--> statement-breakpoint
ALTER TABLE account_data ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE account_data FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY account_scope ON account_data TO switchboard_app
  USING (account_id = ANY ((SELECT app_account_ids())::uuid[])) WITH CHECK (account_id = ANY ((SELECT app_account_ids())::uuid[]));
--> statement-breakpoint
DO $$ BEGIN EXECUTE format('CREATE POLICY service_all ON account_data TO %I USING (true) WITH CHECK (true)', current_user); END $$;
