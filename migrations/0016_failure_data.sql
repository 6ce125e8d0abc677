-- Data from failures (issue 14 item 2, ADR 0010): a fan-out's result has
-- one entry per item whatever its outcome, `null` for an item that did
-- not succeed. Runs stored before kept no result for a failed or canceled
-- fan-out; give them theirs, assembled as the engine now does
-- (`weft_store::tasks::items_result`), so `weft audit`'s
-- `fan_out_result_per_item` holds for old runs too. No schema change.
UPDATE task_executions t
SET result = (
    SELECT coalesce(jsonb_agg(r.result ORDER BY g.i), '[]'::jsonb)
    FROM generate_series(0, t.items_total - 1) AS g(i)
    LEFT JOIN (SELECT DISTINCT ON (x.item_index) x.item_index, x.result FROM executions x
               WHERE x.task_execution_id = t.id AND x.status = 'succeeded'
                 AND x.attempt > t.attempt_base
               ORDER BY x.item_index, x.attempt DESC) r ON r.item_index = g.i
)
WHERE t.with_items AND t.status IN ('failed', 'canceled')
  AND t.items_total IS NOT NULL AND t.result IS NULL;
