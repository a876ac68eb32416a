ALTER TABLE "accounts" ADD COLUMN "status_reason" text;--> statement-breakpoint
ALTER TABLE "accounts" ADD COLUMN "status_changed_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "accounts" ADD COLUMN "status_changed_by" uuid;--> statement-breakpoint
CREATE INDEX "account_switches_open" ON "account_switches" USING btree ("session_id") WHERE "account_switches"."ended_at" is null;