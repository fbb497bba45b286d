-- Who are the 10 biggest customers now? Revenue of Order Completed events summed
-- per current profile (merged segment_ids included), with the profile's traits.
WITH revenue AS (
    SELECT g.canonical_segment_id,
           count(*) AS orders,
           round(sum(t.revenue), 2) AS revenue
    FROM tracks t
    JOIN id_graph g ON g.segment_id = t.segment_id
    WHERE t.event = 'Order Completed'
    GROUP BY g.canonical_segment_id
    ORDER BY revenue DESC, g.canonical_segment_id
    LIMIT 10
)
SELECT r.*, p.* EXCLUDE (canonical_segment_id, merged_to)
FROM revenue r
JOIN profile_traits p ON p.canonical_segment_id = r.canonical_segment_id
ORDER BY r.revenue DESC, r.canonical_segment_id;
