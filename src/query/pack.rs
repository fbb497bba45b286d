//! The query pack: the `.sql` files of `queries/`, built into the binary, run by
//! name with `\run NAME` or `query --run NAME`.
//!
//! A pack file starts with `--` comment lines saying what it answers; lines of
//! the form `-- @param NAME what it is` declare its parameters, which the SQL
//! writes `:NAME` (see [`super::params`]).

include!(concat!(env!("OUT_DIR"), "/pack.rs"));

/// One query of the pack.
#[derive(Debug, Clone, Copy)]
pub struct PackQuery {
    /// Its name: the file name without `.sql`.
    pub name: &'static str,
    /// Its SQL, comments included.
    pub sql: &'static str,
}

impl PackQuery {
    /// The first line of its leading comment.
    pub fn title(&self) -> &'static str {
        self.header()
            .find(|l| !l.starts_with('@'))
            .unwrap_or_default()
    }

    /// Its declared parameters: (name, what it is).
    pub fn params(&self) -> Vec<(&'static str, &'static str)> {
        self.header()
            .filter_map(|l| l.strip_prefix("@param "))
            .map(|l| {
                let l = l.trim();
                l.split_once(char::is_whitespace)
                    .map_or((l, ""), |(n, what)| (n, what.trim()))
            })
            .collect()
    }

    fn header(&self) -> impl Iterator<Item = &'static str> {
        self.sql
            .lines()
            .map_while(|l| l.strip_prefix("--"))
            .map(str::trim)
    }
}

/// Every query of the pack, by name.
pub fn all() -> impl Iterator<Item = PackQuery> {
    PACK.iter().map(|(name, sql)| PackQuery { name, sql })
}

/// The pack query called `name` (case-insensitive, `.sql` optional).
pub fn find(name: &str) -> Result<PackQuery, String> {
    let name = name.trim();
    let name = name.strip_suffix(".sql").unwrap_or(name);
    all()
        .find(|q| q.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            let names: Vec<&str> = all().map(|q| q.name).collect();
            format!(
                "no query named '{name}' in the pack; it holds: {}",
                names.join(", ")
            )
        })
}

/// The pack as a listing: name, parameters, title.
pub fn listing() -> String {
    let mut s = String::from(
        "The query pack (\\run NAME [param=value ...], or query --run NAME -v param=value):\n",
    );
    for q in all() {
        let params: Vec<String> = q.params().iter().map(|(n, _)| format!("{n}=...")).collect();
        let call = if params.is_empty() {
            q.name.to_string()
        } else {
            format!("{} {}", q.name, params.join(" "))
        };
        s.push_str(&format!("  {call:<40} {}\n", q.title()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_says_what_it_answers_and_declares_what_it_uses() {
        assert!(all().count() >= 8);
        for q in all() {
            assert!(!q.title().is_empty(), "{} has no title comment", q.name);
            let declared: Vec<&str> = q.params().iter().map(|(n, _)| *n).collect();
            let used = psync_core::sql::params::referenced(q.sql);
            for name in &used {
                assert!(
                    declared.contains(&name.as_str()),
                    "{} uses :{name} without a `-- @param {name}` line",
                    q.name
                );
            }
            for name in &declared {
                assert!(
                    used.iter().any(|u| u == name),
                    "{} declares {name} but never uses it",
                    q.name
                );
            }
        }
    }

    #[test]
    fn finds_by_name() {
        assert_eq!(find("merges_per_hour.sql").unwrap().name, "merges_per_hour");
        let err = find("nope").unwrap_err();
        assert!(err.contains("merges_per_hour"), "{err}");
    }
}
