CREATE TABLE "automation_revisions" (
	"automation_id" uuid NOT NULL,
	"revision" integer NOT NULL,
	"tenant_id" uuid NOT NULL,
	"account_id" uuid NOT NULL,
	"name" text NOT NULL,
	"definition" jsonb NOT NULL,
	"note" text DEFAULT '' NOT NULL,
	"created_by" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "automation_revisions_automation_id_revision_pk" PRIMARY KEY("automation_id","revision"),
	CONSTRAINT "automation_revisions_revision_check" CHECK ("automation_revisions"."revision" > 0)
);
--> statement-breakpoint
ALTER TABLE "automations" ADD COLUMN "description" text DEFAULT '' NOT NULL;--> statement-breakpoint
ALTER TABLE "automations" ADD COLUMN "enabled" boolean DEFAULT true NOT NULL;--> statement-breakpoint
ALTER TABLE "automations" ADD COLUMN "revision" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "automations" ADD COLUMN "created_by" uuid;--> statement-breakpoint
ALTER TABLE "automations" ADD COLUMN "updated_at" timestamp with time zone DEFAULT now() NOT NULL;--> statement-breakpoint
ALTER TABLE "automation_revisions" ADD CONSTRAINT "automation_revisions_automation_id_automations_id_fk" FOREIGN KEY ("automation_id") REFERENCES "public"."automations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "automation_revisions" ADD CONSTRAINT "automation_revisions_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "automation_revisions" ADD CONSTRAINT "automation_revisions_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "automation_revisions" ADD CONSTRAINT "automation_revisions_created_by_users_id_fk" FOREIGN KEY ("created_by") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "automation_revisions_account" ON "automation_revisions" USING btree ("account_id");--> statement-breakpoint
ALTER TABLE "automations" ADD CONSTRAINT "automations_created_by_users_id_fk" FOREIGN KEY ("created_by") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
-- names become unique per account (case-insensitively): earlier duplicates get a number
UPDATE "automations" a SET "name" = a."name" || ' (' || d.n || ')'
FROM (SELECT "id", row_number() OVER (PARTITION BY "account_id", lower("name") ORDER BY "created_at", "id") AS n FROM "automations") d
WHERE a."id" = d."id" AND d.n > 1;--> statement-breakpoint
CREATE UNIQUE INDEX "automations_account_name" ON "automations" USING btree ("account_id",lower("name"));