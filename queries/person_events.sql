-- Every event of one person (sid_000000b4) across all the segment_ids merged into
-- it: the raw events carry the segment_id of the time of the event, so join them
-- to id_graph to resolve each to the person it belongs to now.
SELECT e.event_id, e."timestamp", e.segment_id, e.event, e.revenue
FROM (
    SELECT event_id, "timestamp", segment_id, event, revenue FROM tracks
    UNION ALL
    SELECT event_id, "timestamp", segment_id, 'identify' AS event, NULL AS revenue FROM identifies
) e
JOIN id_graph g ON g.segment_id = e.segment_id
WHERE g.canonical_segment_id = 'sid_000000b4'
ORDER BY e."timestamp", e.event_id;
