CREATE TABLE "webhook_deliveries" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid NOT NULL,
	"account_id" uuid NOT NULL,
	"automation_id" uuid NOT NULL,
	"status" text NOT NULL,
	"reason" text,
	"method" text NOT NULL,
	"headers" jsonb NOT NULL,
	"query" jsonb NOT NULL,
	"content_type" text,
	"body" jsonb,
	"size" integer NOT NULL,
	"source_ip" text,
	"execution_id" uuid,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "webhook_deliveries_status_check" CHECK ("webhook_deliveries"."status" in ('accepted', 'rejected', 'recorded'))
);
--> statement-breakpoint
ALTER TABLE "automations" ADD COLUMN "webhook_generation" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "automations" ADD COLUMN "webhook_token_hash" text;--> statement-breakpoint
ALTER TABLE "executions" ADD COLUMN "delivery_id" uuid;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD CONSTRAINT "webhook_deliveries_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD CONSTRAINT "webhook_deliveries_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD CONSTRAINT "webhook_deliveries_automation_id_automations_id_fk" FOREIGN KEY ("automation_id") REFERENCES "public"."automations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "webhook_deliveries_account" ON "webhook_deliveries" USING btree ("account_id","received_at" DESC NULLS LAST,"id" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "webhook_deliveries_automation" ON "webhook_deliveries" USING btree ("automation_id","received_at" DESC NULLS LAST);--> statement-breakpoint
CREATE UNIQUE INDEX "automations_webhook" ON "automations" USING btree ("webhook_token_hash");