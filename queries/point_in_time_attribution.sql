-- Point-in-time attribution: each track event credited to the person its
-- segment_id belonged to when it happened (id_graph_history), next to the person
-- it belongs to now (id_graph); `moved` marks events a later merge moved.
SELECT h.canonical_segment_id AS person_then,
       g.canonical_segment_id AS person_now,
       h.canonical_segment_id <> g.canonical_segment_id AS moved,
       count(*) AS events,
       round(coalesce(sum(t.revenue), 0), 2) AS revenue
FROM tracks t
JOIN id_graph_history h
  ON h.segment_id = t.segment_id
 AND t."timestamp" >= h.valid_from
 AND (h.valid_to IS NULL OR t."timestamp" < h.valid_to)
JOIN id_graph g ON g.segment_id = t.segment_id
GROUP BY 1, 2, 3
ORDER BY moved DESC, revenue DESC, person_then, person_now
LIMIT 20;
