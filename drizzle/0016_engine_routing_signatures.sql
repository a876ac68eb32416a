ALTER TABLE "webhook_deliveries" DROP CONSTRAINT "webhook_deliveries_status_check";--> statement-breakpoint
DROP INDEX "executions_due";--> statement-breakpoint
ALTER TABLE "connections" ADD COLUMN "auth_failures" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "executions" ADD COLUMN "automation_account_id" uuid;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD COLUMN "code" text;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD COLUMN "routing_value" text;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD COLUMN "routed_account_id" uuid;--> statement-breakpoint
ALTER TABLE "executions" ADD CONSTRAINT "executions_automation_account_id_accounts_id_fk" FOREIGN KEY ("automation_account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD CONSTRAINT "webhook_deliveries_routed_account_id_accounts_id_fk" FOREIGN KEY ("routed_account_id") REFERENCES "public"."accounts"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "executions_queued" ON "executions" USING btree ("account_id","run_at") WHERE "executions"."status" = 'queued';--> statement-breakpoint
CREATE INDEX "executions_running" ON "executions" USING btree ("account_id") WHERE "executions"."status" = 'running';--> statement-breakpoint
CREATE INDEX "executions_created" ON "executions" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "webhook_deliveries_received" ON "webhook_deliveries" USING btree ("received_at");--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD CONSTRAINT "webhook_deliveries_status_check" CHECK ("webhook_deliveries"."status" in ('accepted', 'routed', 'unrouted', 'duplicate', 'rejected', 'recorded'));