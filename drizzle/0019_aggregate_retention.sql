CREATE INDEX "delivery_stats_hour" ON "delivery_stats" USING btree ("hour");--> statement-breakpoint
CREATE INDEX "execution_stats_hour" ON "execution_stats" USING btree ("hour");