-- The account that owns a run's automation as a plain column (src/db/schema/executions.ts): under
-- row-level security a qual on coalesce(automation_account_id, account_id) is not leakproof, so the
-- index on that expression could not serve debug_webhook's failed walk; on this column it can,
-- in order. Adding a stored generated column rewrites the table once.
DROP INDEX "executions_failed_deliveries";--> statement-breakpoint
ALTER TABLE "executions" ADD COLUMN "automation_owner_id" uuid GENERATED ALWAYS AS (coalesce(automation_account_id, account_id)) STORED;--> statement-breakpoint
CREATE INDEX "executions_failed_deliveries" ON "executions" USING btree ("automation_owner_id","created_at" DESC NULLS LAST,"delivery_id" DESC NULLS LAST) WHERE "executions"."status" = 'failed' and "executions"."delivery_id" is not null;