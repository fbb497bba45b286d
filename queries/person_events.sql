-- Every event of one person across all the segment_ids merged into it: the raw
-- events carry the segment_id of the time of the event, so join them to id_graph
-- to resolve each to the person it belongs to now.
-- @param profile the person: a segment_id or type:value, e.g. sid_000000b4 or email:user193@example.com
SELECT e.event_id, e."timestamp", e.segment_id, e.event
FROM (
    SELECT event_id, "timestamp", segment_id, event FROM tracks
    UNION ALL
    SELECT event_id, "timestamp", segment_id, 'identify' AS event FROM identifies
) e
JOIN id_graph g ON g.segment_id = e.segment_id
WHERE g.canonical_segment_id IN (SELECT canonical_segment_id FROM merge_tree(:profile))
ORDER BY e."timestamp", e.event_id;
