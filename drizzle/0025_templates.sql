CREATE TABLE "deployment_targets" (
	"deployment_id" uuid NOT NULL,
	"account_id" uuid NOT NULL,
	"tenant_id" uuid NOT NULL,
	"seq" integer NOT NULL,
	"wave" integer DEFAULT 0 NOT NULL,
	"action" text NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"automation_id" uuid,
	"expected_revision" integer,
	"from_version" integer,
	"to_version" integer,
	"before_revision" integer,
	"after_revision" integer,
	"restore_revision" integer,
	"bindings" jsonb NOT NULL,
	"values" jsonb NOT NULL,
	"reason" text,
	"applied_at" timestamp with time zone,
	CONSTRAINT "deployment_targets_deployment_id_account_id_pk" PRIMARY KEY("deployment_id","account_id"),
	CONSTRAINT "deployment_targets_action_check" CHECK ("deployment_targets"."action" in ('create', 'update', 'restore', 'disable')),
	CONSTRAINT "deployment_targets_status_check" CHECK ("deployment_targets"."status" in ('pending', 'done', 'failed', 'cancelled', 'rolled_back'))
);
--> statement-breakpoint
CREATE TABLE "deployments" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid NOT NULL,
	"account_id" uuid NOT NULL,
	"template_id" uuid NOT NULL,
	"kind" text NOT NULL,
	"version" integer,
	"rollback_of" uuid,
	"status" text DEFAULT 'running' NOT NULL,
	"plan_hash" text NOT NULL,
	"options" jsonb NOT NULL,
	"waves" jsonb NOT NULL,
	"current_wave" integer DEFAULT 0 NOT NULL,
	"bake_until" timestamp with time zone,
	"worker" text,
	"lease_until" timestamp with time zone,
	"cancel_requested" boolean DEFAULT false NOT NULL,
	"message" text,
	"created_by" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone,
	CONSTRAINT "deployments_status_check" CHECK ("deployments"."status" in ('running', 'baking', 'completed', 'halted', 'rolled_back', 'cancelled', 'failed')),
	CONSTRAINT "deployments_kind_check" CHECK ("deployments"."kind" in ('deploy', 'rollback'))
);
--> statement-breakpoint
CREATE TABLE "template_versions" (
	"template_id" uuid NOT NULL,
	"version" integer NOT NULL,
	"tenant_id" uuid NOT NULL,
	"account_id" uuid NOT NULL,
	"definition" jsonb NOT NULL,
	"variables" jsonb NOT NULL,
	"apps" text[] NOT NULL,
	"classification" text NOT NULL,
	"reasons" text[] DEFAULT '{}'::text[] NOT NULL,
	"note" text DEFAULT '' NOT NULL,
	"created_by" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "template_versions_template_id_version_pk" PRIMARY KEY("template_id","version"),
	CONSTRAINT "template_versions_classification_check" CHECK ("template_versions"."classification" in ('initial', 'compatible', 'breaking'))
);
--> statement-breakpoint
CREATE TABLE "templates" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid NOT NULL,
	"account_id" uuid NOT NULL,
	"name" text NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"latest_version" integer DEFAULT 1 NOT NULL,
	"created_by" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "accounts" DROP CONSTRAINT "accounts_kind_check";--> statement-breakpoint
ALTER TABLE "automations" ADD COLUMN "template_id" uuid;--> statement-breakpoint
ALTER TABLE "automations" ADD COLUMN "template_version" integer;--> statement-breakpoint
ALTER TABLE "automations" ADD COLUMN "template_revision" integer;--> statement-breakpoint
ALTER TABLE "deployment_targets" ADD CONSTRAINT "deployment_targets_deployment_id_deployments_id_fk" FOREIGN KEY ("deployment_id") REFERENCES "public"."deployments"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "deployment_targets" ADD CONSTRAINT "deployment_targets_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "deployment_targets" ADD CONSTRAINT "deployment_targets_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "deployment_targets" ADD CONSTRAINT "deployment_targets_automation_id_automations_id_fk" FOREIGN KEY ("automation_id") REFERENCES "public"."automations"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "deployments" ADD CONSTRAINT "deployments_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "deployments" ADD CONSTRAINT "deployments_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "deployments" ADD CONSTRAINT "deployments_template_id_templates_id_fk" FOREIGN KEY ("template_id") REFERENCES "public"."templates"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "deployments" ADD CONSTRAINT "deployments_created_by_users_id_fk" FOREIGN KEY ("created_by") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "template_versions" ADD CONSTRAINT "template_versions_template_id_templates_id_fk" FOREIGN KEY ("template_id") REFERENCES "public"."templates"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "template_versions" ADD CONSTRAINT "template_versions_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "template_versions" ADD CONSTRAINT "template_versions_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "template_versions" ADD CONSTRAINT "template_versions_created_by_users_id_fk" FOREIGN KEY ("created_by") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "templates" ADD CONSTRAINT "templates_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "templates" ADD CONSTRAINT "templates_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "templates" ADD CONSTRAINT "templates_created_by_users_id_fk" FOREIGN KEY ("created_by") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "deployment_targets_order" ON "deployment_targets" USING btree ("deployment_id","seq");--> statement-breakpoint
CREATE INDEX "deployment_targets_account" ON "deployment_targets" USING btree ("account_id");--> statement-breakpoint
CREATE INDEX "deployments_template" ON "deployments" USING btree ("template_id","created_at" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "deployments_account" ON "deployments" USING btree ("account_id","created_at" DESC NULLS LAST);--> statement-breakpoint
CREATE UNIQUE INDEX "deployments_one_active" ON "deployments" USING btree ("template_id") WHERE "deployments"."status" in ('running', 'baking');--> statement-breakpoint
CREATE INDEX "deployments_active" ON "deployments" USING btree ("lease_until") WHERE "deployments"."status" in ('running', 'baking');--> statement-breakpoint
CREATE INDEX "template_versions_account" ON "template_versions" USING btree ("account_id");--> statement-breakpoint
CREATE UNIQUE INDEX "templates_account_name" ON "templates" USING btree ("account_id",lower("name"));--> statement-breakpoint
CREATE UNIQUE INDEX "accounts_one_templates_per_tenant" ON "accounts" USING btree ("tenant_id") WHERE "accounts"."kind" = 'templates';--> statement-breakpoint
CREATE UNIQUE INDEX "automations_template_copy" ON "automations" USING btree ("template_id","account_id") WHERE "automations"."template_id" is not null;--> statement-breakpoint
ALTER TABLE "accounts" ADD CONSTRAINT "accounts_kind_check" CHECK ("accounts"."kind" in ('customer', 'system', 'sandbox', 'templates'));--> statement-breakpoint
-- Row-level security for the template tables, as drizzle/0001 does for every account table:
-- templates, their versions and deployments belong to the tenant's templates account; a
-- deployment's target row belongs to the account it deploys into.
GRANT SELECT, INSERT, UPDATE, DELETE ON templates, template_versions, deployments, deployment_targets TO switchboard_app;
--> statement-breakpoint
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['templates', 'template_versions', 'deployments', 'deployment_targets'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY account_scope ON %I TO switchboard_app USING (account_id = ANY ((SELECT app_account_ids())::uuid[])) WITH CHECK (account_id = ANY ((SELECT app_account_ids())::uuid[]))', t);
    EXECUTE format('CREATE POLICY service_all ON %I TO %I USING (true) WITH CHECK (true)', t, current_user);
  END LOOP;
END $$;
--> statement-breakpoint
-- Every tenant gets its templates account (init makes it for new ones).
INSERT INTO accounts (tenant_id, slug, name, kind)
SELECT t.id,
       CASE WHEN EXISTS (SELECT 1 FROM accounts a WHERE a.tenant_id = t.id AND a.slug = 'templates') THEN 'templates-' || substr(md5(t.id::text), 1, 6) ELSE 'templates' END,
       'Templates', 'templates'
FROM tenants t
WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.tenant_id = t.id AND a.kind = 'templates');
--> statement-breakpoint
-- Deploying templates is a permission of its own; the first admin of a tenant (Switch Account and
-- admin, as init makes them) has it, as init gives it from now on.
UPDATE users SET permissions = array_append(permissions, 'deploy_automations')
WHERE 'switch_account' = ANY (permissions) AND 'admin' = ANY (permissions) AND NOT ('deploy_automations' = ANY (permissions));
