ALTER TABLE "webhook_deliveries" ADD COLUMN "latest_replay_id" uuid;--> statement-breakpoint
-- replays made before the column existed: each delivery points at its newest one
UPDATE "webhook_deliveries" d SET "latest_replay_id" = r.id
FROM (
  SELECT DISTINCT ON (delivery_id) delivery_id, id FROM executions
  WHERE source = 'replay' AND delivery_id IS NOT NULL
  ORDER BY delivery_id, created_at DESC, id DESC
) r
WHERE d.id = r.delivery_id;
