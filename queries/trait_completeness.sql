-- How complete is each trait? The share of current (canonical, not merged away)
-- profiles that have a value for it, for every trait the lake lands.
SELECT trait, data_type, profiles_with, profiles, pct
FROM trait_completeness()
ORDER BY pct DESC, trait;
