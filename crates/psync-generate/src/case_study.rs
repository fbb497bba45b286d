//! The SPEC §3.5 case study as a lake: Jane Kim's two profiles, merged on identify.

use std::path::Path;

use crate::GenError;
use crate::table::{Col, TableBuf, Val, id_graph_columns};

/// Microseconds of `2022-MM-DD hh:mm:ss` UTC.
fn at(month: u32, day: u32, h: i64, m: i64, s: i64) -> i64 {
    // Days from 2022-01-01 to the first of each month (2022 is not a leap year).
    const MONTH_START: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let days = 18_993 + MONTH_START[(month - 1) as usize] + i64::from(day) - 1; // 18993 = 2022-01-01
    ((days * 86_400) + h * 3600 + m * 60 + s) * 1_000_000
}

/// Writes the case-study lake under `dest`.
pub fn case_study(dest: &Path) -> Result<(), GenError> {
    let s = |n: &str| (n.to_string(), Col::str());
    let i = |n: &str| (n.to_string(), Col::i64());
    let t = |n: &str| (n.to_string(), Col::ts());
    let st = |v: &str| Val::Str(v.to_string());
    let mut ids = TableBuf::new(
        dest,
        "id_graph_updates",
        id_graph_columns(),
        usize::MAX,
        false,
        false,
    );
    for (seq, sid, canon, ev_type, ev, ts) in [
        (
            1,
            "profile_1",
            "profile_1",
            "page",
            "event_1",
            at(5, 2, 14, 1, 0),
        ),
        (
            4,
            "profile_2",
            "profile_2",
            "page",
            "event_3",
            at(6, 22, 10, 47, 15),
        ),
        (
            5,
            "profile_2",
            "profile_1",
            "identify",
            "event_4",
            at(6, 22, 10, 48, 0),
        ),
    ] {
        ids.push(
            vec![
                st(sid),
                st(canon),
                st(ev_type),
                st(ev),
                Val::I64(seq),
                Val::Ts(ts),
                Val::Ts(ts + 2_000_000),
            ],
            "2022-05-02",
        )?;
    }
    ids.flush()?;

    let mut ext = TableBuf::new(
        dest,
        "external_id_mapping_updates",
        vec![
            s("segment_id"),
            s("external_id_type"),
            s("external_id_value"),
            i("seq"),
            t("timestamp"),
            t("uuid_ts"),
        ],
        usize::MAX,
        false,
        false,
    );
    for (seq, sid, kind, value, ts) in [
        (
            2,
            "profile_1",
            "anonymous_id",
            "5285bc35-05ef-4d21",
            at(5, 2, 14, 1, 0),
        ),
        (
            3,
            "profile_1",
            "email",
            "jane.kim@segment.com",
            at(5, 2, 14, 1, 47),
        ),
        (
            6,
            "profile_2",
            "anonymous_id",
            "b50e18a5-1b8d-451c",
            at(6, 22, 10, 48, 0),
        ),
    ] {
        ext.push(
            vec![
                st(sid),
                st(kind),
                st(value),
                Val::I64(seq),
                Val::Ts(ts),
                Val::Ts(ts + 2_000_000),
            ],
            "2022-05-02",
        )?;
    }
    ext.flush()?;

    let mut traits = TableBuf::new(
        dest,
        "profile_traits_updates",
        vec![
            s("segment_id"),
            i("seq"),
            t("timestamp"),
            t("uuid_ts"),
            s("email"),
        ],
        usize::MAX,
        false,
        false,
    );
    for (seq, ts) in [(3, at(5, 2, 14, 1, 47)), (7, at(6, 22, 10, 48, 0))] {
        traits.push(
            vec![
                st("profile_1"),
                Val::I64(seq),
                Val::Ts(ts),
                Val::Ts(ts + 2_000_000),
                st("jane.kim@segment.com"),
            ],
            "2022-05-02",
        )?;
    }
    traits.flush()
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps() {
        // 2022-05-02T14:01:00Z
        assert_eq!(super::at(5, 2, 14, 1, 0), 1_651_500_060_000_000);
    }
}
