-- How complete is each trait? The share of current (canonical, not merged away)
-- profiles that have a value for it.
WITH p AS (SELECT * FROM profile_traits WHERE merged_to IS NULL),
n AS (SELECT count(*) AS profiles FROM p),
t AS (
    SELECT 'email' AS trait, count(email) AS profiles_with FROM p
    UNION ALL SELECT 'first_name', count(first_name) FROM p
    UNION ALL SELECT 'plan', count(plan) FROM p
    UNION ALL SELECT 'age', count(age) FROM p
    UNION ALL SELECT 'lifetime_value', count(lifetime_value) FROM p
    UNION ALL SELECT 'is_vip', count(is_vip) FROM p
    UNION ALL SELECT 'city', count(city) FROM p
    UNION ALL SELECT 'last_seen_at', count(last_seen_at) FROM p
)
SELECT t.trait, t.profiles_with, n.profiles,
       round(100.0 * t.profiles_with / n.profiles, 1) AS pct
FROM t CROSS JOIN n
ORDER BY pct DESC, t.trait;
