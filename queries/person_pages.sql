-- Every page one person viewed (the pages table), across all the segment_ids
-- merged into it, newest first.
-- @param profile the person: a segment_id or type:value, e.g. sid_000000b4 or email:user193@example.com
SELECT p.*
FROM pages p
JOIN id_graph g ON g.segment_id = p.segment_id
WHERE g.canonical_segment_id IN (SELECT canonical_segment_id FROM merge_tree(:profile))
ORDER BY p."timestamp" DESC, p.segment_id;
