CREATE TABLE "delivery_stats" (
	"tenant_id" uuid NOT NULL,
	"account_id" uuid NOT NULL,
	"automation_id" uuid NOT NULL,
	"hour" timestamp with time zone NOT NULL,
	"received" integer DEFAULT 0 NOT NULL,
	"accepted" integer DEFAULT 0 NOT NULL,
	"routed" integer DEFAULT 0 NOT NULL,
	"unrouted" integer DEFAULT 0 NOT NULL,
	"duplicate" integer DEFAULT 0 NOT NULL,
	"rejected" integer DEFAULT 0 NOT NULL,
	"recorded" integer DEFAULT 0 NOT NULL,
	CONSTRAINT "delivery_stats_account_id_hour_automation_id_pk" PRIMARY KEY("account_id","hour","automation_id")
);
--> statement-breakpoint
CREATE TABLE "execution_stats" (
	"tenant_id" uuid NOT NULL,
	"account_id" uuid NOT NULL,
	"automation_id" uuid NOT NULL,
	"hour" timestamp with time zone NOT NULL,
	"succeeded" integer DEFAULT 0 NOT NULL,
	"failed" integer DEFAULT 0 NOT NULL,
	"filtered" integer DEFAULT 0 NOT NULL,
	"cancelled" integer DEFAULT 0 NOT NULL,
	"throttled" integer DEFAULT 0 NOT NULL,
	"last_success_at" timestamp with time zone,
	"last_failure_at" timestamp with time zone,
	CONSTRAINT "execution_stats_account_id_hour_automation_id_pk" PRIMARY KEY("account_id","hour","automation_id")
);
--> statement-breakpoint
CREATE TABLE "failure_groups" (
	"fingerprint" text NOT NULL,
	"account_id" uuid NOT NULL,
	"automation_id" uuid NOT NULL,
	"tenant_id" uuid NOT NULL,
	"target" text NOT NULL,
	"step_id" text NOT NULL,
	"error_code" text NOT NULL,
	"upstream_status" integer,
	"status" text DEFAULT 'open' NOT NULL,
	"count" integer DEFAULT 0 NOT NULL,
	"total" integer DEFAULT 0 NOT NULL,
	"first_seen" timestamp with time zone NOT NULL,
	"last_seen" timestamp with time zone NOT NULL,
	"resolved_at" timestamp with time zone,
	"last_execution_id" uuid,
	"last_message" text,
	CONSTRAINT "failure_groups_fingerprint_account_id_automation_id_pk" PRIMARY KEY("fingerprint","account_id","automation_id"),
	CONSTRAINT "failure_groups_status_check" CHECK ("failure_groups"."status" in ('open', 'resolved'))
);
--> statement-breakpoint
ALTER TABLE "executions" ADD COLUMN "idempotency_of" uuid;--> statement-breakpoint
ALTER TABLE "executions" ADD COLUMN "error_target" text;--> statement-breakpoint
ALTER TABLE "executions" ADD COLUMN "error_status" integer;--> statement-breakpoint
ALTER TABLE "delivery_stats" ADD CONSTRAINT "delivery_stats_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "delivery_stats" ADD CONSTRAINT "delivery_stats_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "delivery_stats" ADD CONSTRAINT "delivery_stats_automation_id_automations_id_fk" FOREIGN KEY ("automation_id") REFERENCES "public"."automations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "execution_stats" ADD CONSTRAINT "execution_stats_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "execution_stats" ADD CONSTRAINT "execution_stats_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "execution_stats" ADD CONSTRAINT "execution_stats_automation_id_automations_id_fk" FOREIGN KEY ("automation_id") REFERENCES "public"."automations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "failure_groups" ADD CONSTRAINT "failure_groups_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "failure_groups" ADD CONSTRAINT "failure_groups_automation_id_automations_id_fk" FOREIGN KEY ("automation_id") REFERENCES "public"."automations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "failure_groups" ADD CONSTRAINT "failure_groups_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "delivery_stats_automation" ON "delivery_stats" USING btree ("automation_id","hour");--> statement-breakpoint
CREATE INDEX "execution_stats_automation" ON "execution_stats" USING btree ("automation_id","hour");--> statement-breakpoint
CREATE INDEX "failure_groups_account" ON "failure_groups" USING btree ("account_id","last_seen" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "failure_groups_open" ON "failure_groups" USING btree ("account_id","automation_id") WHERE "failure_groups"."status" = 'open';--> statement-breakpoint
CREATE INDEX "failure_groups_last_seen" ON "failure_groups" USING btree ("last_seen" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "executions_replays" ON "executions" USING btree ("delivery_id") WHERE "executions"."source" = 'replay';--> statement-breakpoint
CREATE INDEX "executions_failed_deliveries" ON "executions" USING btree (coalesce("automation_account_id", "account_id"),"created_at" DESC NULLS LAST) WHERE "executions"."status" = 'failed' and "executions"."delivery_id" is not null;--> statement-breakpoint
CREATE INDEX "webhook_deliveries_not_run" ON "webhook_deliveries" USING btree ("account_id","status","received_at" DESC NULLS LAST) WHERE "webhook_deliveries"."status" not in ('accepted', 'routed');