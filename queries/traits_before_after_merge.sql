-- Profile sid_000000b4 (six segment_ids merged into one): the trait values each of
-- its segment_ids had on its own just before the last merge into it (last_seen
-- over that segment_id's own updates older than the merge), then the merged
-- profile's values after it (the profile_traits view).
WITH last_merge AS (
    SELECT max("timestamp") AS at
    FROM id_graph_updates
    WHERE canonical_segment_id = 'sid_000000b4' AND segment_id <> canonical_segment_id
)
SELECT 'before' AS stage,
       u.segment_id,
       last_seen(u.email, u.seq, u."timestamp", u.uuid_ts) AS email,
       last_seen(u.first_name, u.seq, u."timestamp", u.uuid_ts) AS first_name,
       last_seen(u.plan, u.seq, u."timestamp", u.uuid_ts) AS plan,
       last_seen(u.age, u.seq, u."timestamp", u.uuid_ts) AS age,
       last_seen(u.city, u.seq, u."timestamp", u.uuid_ts) AS city
FROM profile_traits_updates u
CROSS JOIN last_merge m
WHERE u.segment_id IN (SELECT segment_id FROM id_graph
                       WHERE canonical_segment_id = 'sid_000000b4')
  AND u."timestamp" < m.at
GROUP BY u.segment_id
UNION ALL
SELECT 'after', canonical_segment_id, email, first_name, plan, age, city
FROM profile_traits
WHERE canonical_segment_id = 'sid_000000b4'
ORDER BY stage DESC, segment_id;
