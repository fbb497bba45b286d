-- Where did each of one person's traits come from? For every trait of
-- profile_traits, its value and the update row that set it: which child
-- segment_id, seq and time (the explain command's trait sources).
-- @param profile the person: a segment_id or type:value, e.g. sid_000000b4 or email:user193@example.com
SELECT *
FROM trait_sources(:profile)
ORDER BY trait;
