-- Which profiles hold more than 1 email (candidates for an identifier limit, or
-- for over-merging)? One row per current profile, with its emails.
SELECT canonical_segment_id,
       count(*) AS emails,
       string_agg(external_id_value, ' ' ORDER BY external_id_value) AS email_values
FROM external_id_mapping
WHERE external_id_type = 'email'
GROUP BY canonical_segment_id
HAVING count(*) > 1
ORDER BY emails DESC, canonical_segment_id;
