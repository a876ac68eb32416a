-- Row-level security for the operations aggregates (see 0001 and 0004 for the mechanism), and the
-- triggers that keep them: each runs in the transaction of the write it counts, in that write's
-- account scope, so an aggregate is never ahead of or behind what committed.
GRANT SELECT, INSERT, UPDATE, DELETE ON execution_stats, delivery_stats, failure_groups TO switchboard_app;
--> statement-breakpoint
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['execution_stats', 'delivery_stats', 'failure_groups'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY account_scope ON %I TO switchboard_app USING (account_id = ANY ((SELECT app_account_ids())::uuid[])) WITH CHECK (account_id = ANY ((SELECT app_account_ids())::uuid[]))', t);
    EXECUTE format('CREATE POLICY service_all ON %I TO %I USING (true) WITH CHECK (true)', t, current_user);
  END LOOP;
END $$;
--> statement-breakpoint
-- An execution reached its final state: count it in its hour; a failure joins (or reopens) its
-- failure group; a success resolves the automation's open groups in that account.
CREATE FUNCTION switchboard_execution_finished() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  at timestamptz := coalesce(NEW.finished_at, now());
BEGIN
  INSERT INTO execution_stats AS s (tenant_id, account_id, automation_id, hour, succeeded, failed, filtered, cancelled, last_success_at, last_failure_at)
  VALUES (NEW.tenant_id, NEW.account_id, NEW.automation_id, date_trunc('hour', at),
          (NEW.status = 'succeeded')::int, (NEW.status = 'failed')::int, (NEW.status = 'filtered')::int, (NEW.status = 'cancelled')::int,
          CASE WHEN NEW.status = 'succeeded' THEN at END, CASE WHEN NEW.status = 'failed' THEN at END)
  ON CONFLICT (account_id, hour, automation_id) DO UPDATE SET
    succeeded = s.succeeded + excluded.succeeded, failed = s.failed + excluded.failed,
    filtered = s.filtered + excluded.filtered, cancelled = s.cancelled + excluded.cancelled,
    last_success_at = greatest(s.last_success_at, excluded.last_success_at),
    last_failure_at = greatest(s.last_failure_at, excluded.last_failure_at);
  IF NEW.status = 'failed' THEN
    INSERT INTO failure_groups AS g (fingerprint, account_id, automation_id, tenant_id, target, step_id, error_code, upstream_status, status, count, total, first_seen, last_seen, last_execution_id, last_message)
    VALUES (md5(concat_ws(chr(31), coalesce(NEW.error_target, ''), coalesce(NEW.failed_step, ''), coalesce(NEW.error_code, ''), coalesce(NEW.error_status::text, ''))),
            NEW.account_id, NEW.automation_id, NEW.tenant_id, coalesce(NEW.error_target, ''), coalesce(NEW.failed_step, ''), coalesce(NEW.error_code, 'internal_error'), NEW.error_status,
            'open', 1, 1, at, at, NEW.id, left(NEW.error_message, 500))
    ON CONFLICT (fingerprint, account_id, automation_id) DO UPDATE SET
      count = CASE WHEN g.status = 'open' THEN g.count + 1 ELSE 1 END,
      first_seen = CASE WHEN g.status = 'open' THEN g.first_seen ELSE excluded.first_seen END,
      total = g.total + 1, status = 'open', resolved_at = NULL,
      last_seen = greatest(g.last_seen, excluded.last_seen), last_execution_id = excluded.last_execution_id, last_message = excluded.last_message;
  ELSIF NEW.status = 'succeeded' THEN
    UPDATE failure_groups SET status = 'resolved', resolved_at = at
    WHERE account_id = NEW.account_id AND automation_id = NEW.automation_id AND status = 'open';
  END IF;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER executions_finished AFTER UPDATE OF status ON executions FOR EACH ROW
  WHEN (NEW.status IN ('succeeded', 'failed', 'filtered', 'cancelled') AND OLD.status NOT IN ('succeeded', 'failed', 'filtered', 'cancelled'))
  EXECUTE FUNCTION switchboard_execution_finished();
--> statement-breakpoint
-- A step attempt held back by a rate limit (the connection's budget, or the app's 429): counted
-- as throttling in the hour it started. Rare, so a lookup of its run is affordable here.
CREATE FUNCTION switchboard_step_throttled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO execution_stats AS s (tenant_id, account_id, automation_id, hour, throttled)
  SELECT NEW.tenant_id, NEW.account_id, e.automation_id, date_trunc('hour', NEW.started_at), 1 FROM executions e WHERE e.id = NEW.execution_id
  ON CONFLICT (account_id, hour, automation_id) DO UPDATE SET throttled = s.throttled + 1;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER execution_steps_throttled AFTER INSERT ON execution_steps FOR EACH ROW
  WHEN (NEW.error_code IN ('rate_limited', 'http_429'))
  EXECUTE FUNCTION switchboard_step_throttled();
--> statement-breakpoint
-- Deliveries recorded: one grouped upsert per insert statement (ingress writes a batch per statement).
CREATE FUNCTION switchboard_deliveries_recorded() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO delivery_stats AS s (tenant_id, account_id, automation_id, hour, received, accepted, routed, unrouted, duplicate, rejected, recorded)
  SELECT tenant_id, account_id, automation_id, date_trunc('hour', received_at), count(*),
         count(*) FILTER (WHERE status = 'accepted'), count(*) FILTER (WHERE status = 'routed'), count(*) FILTER (WHERE status = 'unrouted'),
         count(*) FILTER (WHERE status = 'duplicate'), count(*) FILTER (WHERE status = 'rejected'), count(*) FILTER (WHERE status = 'recorded')
  FROM new_deliveries GROUP BY 1, 2, 3, 4
  ON CONFLICT (account_id, hour, automation_id) DO UPDATE SET
    received = s.received + excluded.received, accepted = s.accepted + excluded.accepted, routed = s.routed + excluded.routed,
    unrouted = s.unrouted + excluded.unrouted, duplicate = s.duplicate + excluded.duplicate,
    rejected = s.rejected + excluded.rejected, recorded = s.recorded + excluded.recorded;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER webhook_deliveries_recorded AFTER INSERT ON webhook_deliveries REFERENCING NEW TABLE AS new_deliveries
  FOR EACH STATEMENT EXECUTE FUNCTION switchboard_deliveries_recorded();
