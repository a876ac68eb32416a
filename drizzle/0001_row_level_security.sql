-- Row-level security: defense in depth under the core's own account filters.
--
-- Account-scoped work runs inside withAccount() (src/db/scope.ts): a transaction that sets
-- app.account_ids (transaction-local) and then SET LOCAL ROLE switchboard_app. The policies below
-- let that role see and write only rows whose account_id is in that set, so a query that forgets
-- its filter still cannot touch another account. The connecting role (the one that ran this
-- migration) keeps full access through an explicit policy, because FORCE makes RLS apply to the
-- table owner too.
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'switchboard_app') THEN
    CREATE ROLE switchboard_app NOLOGIN;
  END IF;
END $$;
--> statement-breakpoint
DO $$ BEGIN
  EXECUTE format('GRANT switchboard_app TO %I', current_user);
EXCEPTION WHEN others THEN NULL; -- already a member, or a superuser (who may SET ROLE anyway)
END $$;
--> statement-breakpoint
CREATE FUNCTION app_account_ids() RETURNS uuid[] LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('app.account_ids', true), '')::uuid[], '{}'::uuid[])
$$;
--> statement-breakpoint
GRANT USAGE ON SCHEMA public TO switchboard_app;
--> statement-breakpoint
GRANT SELECT ON tenants, accounts TO switchboard_app;
--> statement-breakpoint
-- no password hashes for the scoped role: column-level grant
GRANT SELECT (id, tenant_id, email, name, home_account_id, permissions, status, created_at) ON users TO switchboard_app;
--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE, DELETE ON memberships, account_switches, audit_log TO switchboard_app;
--> statement-breakpoint
GRANT USAGE ON SEQUENCE audit_log_id_seq TO switchboard_app;
--> statement-breakpoint
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['memberships', 'account_switches', 'audit_log'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY account_scope ON %I TO switchboard_app USING (account_id = ANY (app_account_ids())) WITH CHECK (account_id = ANY (app_account_ids()))', t);
    EXECUTE format('CREATE POLICY service_all ON %I TO %I USING (true) WITH CHECK (true)', t, current_user);
  END LOOP;
END $$;
