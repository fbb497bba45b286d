-- Who are the 10 biggest customers now? Revenue of Order Completed events summed
-- per current profile (merged segment_ids included), with the profile's traits.
SELECT g.canonical_segment_id, p.email, p.plan, p.city,
       count(*) AS orders,
       round(sum(t.revenue), 2) AS revenue
FROM tracks t
JOIN id_graph g ON g.segment_id = t.segment_id
JOIN profile_traits p ON p.canonical_segment_id = g.canonical_segment_id
WHERE t.event = 'Order Completed'
GROUP BY g.canonical_segment_id, p.email, p.plan, p.city
ORDER BY revenue DESC, g.canonical_segment_id
LIMIT 10;
