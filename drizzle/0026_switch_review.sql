ALTER TABLE "account_switches" ADD COLUMN "ended_by" uuid;--> statement-breakpoint
ALTER TABLE "account_switches" ADD COLUMN "end_reason" text;--> statement-breakpoint
ALTER TABLE "account_switches" ADD CONSTRAINT "account_switches_ended_by_users_id_fk" FOREIGN KEY ("ended_by") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "account_switches_started" ON "account_switches" USING btree ("started_at","id");--> statement-breakpoint
CREATE INDEX "audit_log_tenant_at" ON "audit_log" USING btree ("tenant_id","id");--> statement-breakpoint
CREATE INDEX "audit_log_switch" ON "audit_log" USING btree ("switch_id") WHERE "audit_log"."switch_id" is not null;