-- Merge chains longer than one hop: segment_ids whose latest id_graph_updates row
-- points at a profile that was itself merged later (its recursive entry is late
-- or missing), so a one-hop join would resolve them wrongly.
WITH latest_target AS (
    SELECT segment_id, latest(canonical_segment_id, seq, "timestamp", uuid_ts) AS points_to
    FROM id_graph_updates
    GROUP BY segment_id
)
SELECT l.segment_id, l.points_to, g.canonical_segment_id AS final_canonical
FROM latest_target l
JOIN id_graph g USING (segment_id)
WHERE l.points_to <> g.canonical_segment_id
ORDER BY l.segment_id;
