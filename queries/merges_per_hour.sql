-- Profile creations vs merges per hour, by the type of event that triggered them.
-- A creation is an id_graph_updates row whose segment_id is its own canonical_segment_id;
-- a merge is counted once per triggering event, even when Segment also landed
-- "recursive entries" (extra rows re-pointing profiles merged into the loser earlier).
SELECT date_trunc('hour', "timestamp") AS hour,
       triggering_event_type,
       count(*) FILTER (WHERE segment_id = canonical_segment_id) AS profiles_created,
       count(DISTINCT CASE WHEN segment_id <> canonical_segment_id
                           THEN triggering_event_id END) AS merges,
       count(*) FILTER (WHERE segment_id <> canonical_segment_id) AS merge_rows
FROM id_graph_updates
GROUP BY 1, 2
ORDER BY 1, 2;
