-- Every customer (current profile) with its merged segment_ids, its external ids
-- and its current traits; the most merged first.
WITH segments AS (
    SELECT canonical_segment_id,
           count(*) AS segment_ids,
           string_agg(segment_id, ' ' ORDER BY segment_id) AS merged_segment_ids
    FROM id_graph
    GROUP BY canonical_segment_id
),
ids AS (
    SELECT canonical_segment_id,
           string_agg(external_id_type || ':' || external_id_value, ' '
                      ORDER BY external_id_type, external_id_value) AS external_ids
    FROM external_id_mapping
    GROUP BY canonical_segment_id
)
SELECT s.*, i.external_ids, p.* EXCLUDE (canonical_segment_id, merged_to)
FROM segments s
LEFT JOIN ids i ON i.canonical_segment_id = s.canonical_segment_id
LEFT JOIN profile_traits p ON p.canonical_segment_id = s.canonical_segment_id
ORDER BY s.segment_ids DESC, s.canonical_segment_id
LIMIT 100;
