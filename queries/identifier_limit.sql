-- Which profiles hold more than one identifier of a type (candidates for an
-- identifier limit, or for over-merging)? One row per current profile and type.
SELECT canonical_segment_id,
       external_id_type,
       count(*) AS ids,
       string_agg(external_id_value, ' ' ORDER BY external_id_value) AS id_values
FROM external_id_mapping
GROUP BY canonical_segment_id, external_id_type
HAVING count(*) > 1
ORDER BY ids DESC, canonical_segment_id, external_id_type;
