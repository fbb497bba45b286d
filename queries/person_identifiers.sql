-- Every identifier of one person, and which of its merged segment_ids it was
-- first seen on (the explain command's identifiers section).
-- @param profile the person: a segment_id or type:value, e.g. sid_000000b4 or email:user193@example.com
SELECT external_id_type, external_id_value, segment_id AS first_seen_on, first_seen
FROM identifiers(:profile)
ORDER BY external_id_type, external_id_value;
