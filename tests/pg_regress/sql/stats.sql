-- workflow.stats: one row per figure. Counters count committed events in this database since
-- the server started or stats_reset(); gauges are read from the tables at each query.
\d workflow.stats
\df workflow.stats*
SELECT name, kind, queue FROM workflow.stats
 WHERE queue IS NULL OR queue = 'default' ORDER BY kind, name, queue NULLS FIRST;
-- stats_reset() zeroes this database's counters and is their new stats_reset.
SELECT workflow.stats_reset() BETWEEN now() AND clock_timestamp() AS reset_now;
SELECT name, value, stats_reset > now() - interval '1 minute' AS recent
  FROM workflow.stats WHERE kind = 'counter' ORDER BY name;
-- A rolled-back run and step count nothing; committed ones count once.
BEGIN;
SELECT claimed FROM workflow.start('stats', NULL, 'stats-1');
SELECT workflow.step_put('stats-1', 1, 'one', '1');
ROLLBACK;
SELECT claimed FROM workflow.start('stats', NULL, 'stats-1');
SELECT workflow.step_put('stats-1', 1, 'one', '1');
SELECT workflow.finish('stats-1', '1');
SELECT name, value FROM workflow.stats WHERE kind = 'counter' AND value > 0 ORDER BY name;
