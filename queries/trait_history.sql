-- The history of one trait of one person: every update of it on any of the
-- segment_ids merged into the person, oldest first, and the value that won.
-- @param profile the person: a segment_id or type:value, e.g. sid_000000b4 or email:user193@example.com
-- @param trait a trait column of profile_traits_updates (lower case), e.g. plan
SELECT u.segment_id,
       u.seq,
       u."timestamp",
       CAST(u.:"trait" AS VARCHAR) AS value,
       CAST(u.:"trait" AS VARCHAR) = (SELECT value FROM trait_sources(:profile) WHERE trait = :trait) AS is_current
FROM profile_traits_updates u
JOIN id_graph g ON g.segment_id = u.segment_id
WHERE g.canonical_segment_id IN (SELECT canonical_segment_id FROM merge_tree(:profile))
  AND u.:"trait" IS NOT NULL
ORDER BY u."timestamp", u.seq, u.segment_id;
