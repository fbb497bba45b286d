-- Every identifier of one person (sid_000000b4), and which of its merged
-- segment_ids it was first seen on (its latest external_id_mapping_updates row).
SELECT m.external_id_type,
       m.external_id_value,
       u.segment_id AS first_seen_on,
       m."timestamp"
FROM external_id_mapping m
JOIN (SELECT external_id_type, external_id_value,
             latest(segment_id, seq, "timestamp", uuid_ts) AS segment_id
      FROM external_id_mapping_updates
      GROUP BY external_id_type, external_id_value) u
  USING (external_id_type, external_id_value)
WHERE m.canonical_segment_id = 'sid_000000b4'
ORDER BY m.external_id_type, m.external_id_value;
