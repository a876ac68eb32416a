-- Row-level security for the connection tables (see 0001 for the mechanism).
--
-- connections, rate_limit_buckets, automations and automation_connections are account data:
-- the scoped role sees and writes only rows of app.account_ids. In addition it may READ the
-- connections that a parent or the system setup account marked shared, when the scope names that
-- account in app.shared_account_ids (src/db/scope.ts): a child can see its parent's shared
-- connection, and nothing else of the parent's connections, even through a query without filters.
--
-- apps (the tenant's catalog) and data_keys (wrapped keys: useless without the master key) are
-- readable by the scoped role; human_requests and password_failures belong to the privileged
-- path only.
CREATE FUNCTION app_shared_account_ids() RETURNS uuid[] LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('app.shared_account_ids', true), '')::uuid[], '{}'::uuid[])
$$;
--> statement-breakpoint
GRANT SELECT ON apps, data_keys TO switchboard_app;
--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE, DELETE ON connections, rate_limit_buckets, automations, automation_connections TO switchboard_app;
--> statement-breakpoint
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['connections', 'rate_limit_buckets', 'automations', 'automation_connections'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY account_scope ON %I TO switchboard_app USING (account_id = ANY (app_account_ids())) WITH CHECK (account_id = ANY (app_account_ids()))', t);
    EXECUTE format('CREATE POLICY service_all ON %I TO %I USING (true) WITH CHECK (true)', t, current_user);
  END LOOP;
END $$;
--> statement-breakpoint
CREATE POLICY shared_read ON connections FOR SELECT TO switchboard_app USING (shared AND account_id = ANY (app_shared_account_ids()));
