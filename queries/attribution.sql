-- First-touch and last-touch attribution per person: the first and the last track
-- event of each current profile (across all its merged segment_ids), with the
-- revenue it brought; the 20 people with the most revenue.
SELECT g.canonical_segment_id,
       first_value(t.event ORDER BY t."timestamp", t.event_id) AS first_touch,
       min(t."timestamp") AS first_touch_at,
       last_value(t.event ORDER BY t."timestamp", t.event_id) AS last_touch,
       max(t."timestamp") AS last_touch_at,
       count(*) AS events,
       round(coalesce(sum(t.revenue), 0), 2) AS revenue
FROM tracks t
JOIN id_graph g ON g.segment_id = t.segment_id
GROUP BY g.canonical_segment_id
ORDER BY revenue DESC, g.canonical_segment_id
LIMIT 20;
