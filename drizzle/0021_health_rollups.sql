CREATE TABLE "health_rollup_rows" (
	"tenant_id" uuid NOT NULL,
	"window_hours" integer NOT NULL,
	"account_id" uuid NOT NULL,
	"automation_id" uuid NOT NULL,
	"as_of" timestamp with time zone NOT NULL,
	"succeeded" integer DEFAULT 0 NOT NULL,
	"failed" integer DEFAULT 0 NOT NULL,
	"filtered" integer DEFAULT 0 NOT NULL,
	"cancelled" integer DEFAULT 0 NOT NULL,
	"throttled" integer DEFAULT 0 NOT NULL,
	"previous_succeeded" integer DEFAULT 0 NOT NULL,
	"previous_failed" integer DEFAULT 0 NOT NULL,
	"last_success_at" timestamp with time zone,
	"last_failure_at" timestamp with time zone,
	"received" integer DEFAULT 0 NOT NULL,
	"accepted" integer DEFAULT 0 NOT NULL,
	"routed" integer DEFAULT 0 NOT NULL,
	"unrouted" integer DEFAULT 0 NOT NULL,
	"duplicate" integer DEFAULT 0 NOT NULL,
	"rejected" integer DEFAULT 0 NOT NULL,
	"recorded" integer DEFAULT 0 NOT NULL,
	"previous_received" integer DEFAULT 0 NOT NULL,
	"baseline" double precision DEFAULT 0 NOT NULL,
	"baseline_windows" integer DEFAULT 0 NOT NULL,
	CONSTRAINT "health_rollup_rows_tenant_id_window_hours_account_id_automation_id_pk" PRIMARY KEY("tenant_id","window_hours","account_id","automation_id")
);
--> statement-breakpoint
CREATE TABLE "health_rollups" (
	"tenant_id" uuid NOT NULL,
	"window_hours" integer NOT NULL,
	"as_of" timestamp with time zone NOT NULL,
	"computed_at" timestamp with time zone DEFAULT now() NOT NULL,
	"requested_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "health_rollups_tenant_id_window_hours_pk" PRIMARY KEY("tenant_id","window_hours")
);
--> statement-breakpoint
ALTER TABLE "health_rollup_rows" ADD CONSTRAINT "health_rollup_rows_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "health_rollup_rows" ADD CONSTRAINT "health_rollup_rows_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "health_rollup_rows" ADD CONSTRAINT "health_rollup_rows_automation_id_automations_id_fk" FOREIGN KEY ("automation_id") REFERENCES "public"."automations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "health_rollups" ADD CONSTRAINT "health_rollups_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "health_rollup_rows_account" ON "health_rollup_rows" USING btree ("account_id");--> statement-breakpoint
CREATE INDEX "health_rollup_rows_automation" ON "health_rollup_rows" USING btree ("automation_id");