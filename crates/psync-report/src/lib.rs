//! The identity health report of a destination as one self-contained HTML page:
//! a short text summary, the numbers, and SVG charts drawn with `plotters`
//! (inline, so the page needs no network and no other file to be viewed).
//!
//! ```text
//! <dest>/_psync/health/*  ─► psync_core::health::Report ─► render ─► report.html
//!   #summary          text summary and the totals (one <td data-key=...> each)
//!   #chart-daily      creations and merges per day (lines)
//!   #chart-sizes      merged profiles by size (bars)
//!   #chart-limits     profiles above identifier limits per type (bars)
//!   #identifier-limits, #missing-recursive   the tables behind them
//! ```
//!
//! The page is well-formed XML as well as HTML, so any XML parser reads it.

use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::prelude::*;
use psync_core::health::{Day, LISTED_MISSING, Report};

/// Ids of the charts the page holds, in page order.
pub const CHARTS: [&str; 3] = ["chart-daily", "chart-sizes", "chart-limits"];

/// Errors while drawing a chart.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// `plotters` could not draw a chart.
    #[error("cannot draw {chart}: {message}")]
    Chart {
        /// The chart's id.
        chart: &'static str,
        /// What plotters said.
        message: String,
    },
}

const WIDTH: u32 = 880;
const HEIGHT: u32 = 320;
const CREATIONS: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const MERGES: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const BARS: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);

/// The page for `report`, read from destination `dest`.
pub fn render(report: &Report, dest: &str) -> Result<String, ReportError> {
    let s = &report.summary;
    let mut page = String::new();
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<title>psync-lake identity health: {dest}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 940px; color: #222; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 2em; }}
p.meta {{ color: #666; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: left; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
figure {{ margin: 0.5em 0; }}
.legend span {{ display: inline-block; width: 0.8em; height: 0.8em; margin: 0 0.3em 0 1em; }}
</style>
</head>
<body>
<h1>Identity health</h1>
<p class="meta">{dest} &#183; run {run} &#183; computed {at}</p>
"#,
        dest = esc(dest),
        run = esc(&s.run_id),
        at = esc(&report.computed_at),
    );

    page.push_str("<section id=\"summary\">\n<h2>Summary</h2>\n<p id=\"summary-text\">");
    page.push_str(&esc(&summary_text(report)));
    page.push_str("</p>\n<table id=\"numbers\">\n");
    let rows: [(&str, &str, Option<i64>); 11] = [
        ("segment_ids", "segment_ids", Some(s.segment_ids)),
        ("profiles", "profiles (canonical)", Some(s.profiles)),
        (
            "merged_away",
            "segment_ids merged away",
            Some(s.merged_away()),
        ),
        (
            "merged_profiles",
            "profiles of 2+ segment_ids",
            Some(s.merged_profiles),
        ),
        (
            "largest_profile",
            "segment_ids of the largest profile",
            Some(s.largest_profile),
        ),
        ("creations", "profile creations", Some(s.creations)),
        ("merges", "merges", Some(s.merges)),
        (
            "cycles_broken",
            "merge cycles broken",
            Some(s.cycles_broken),
        ),
        (
            "missing_recursive_entries",
            "recursive entries missing",
            Some(s.missing_recursive_entries),
        ),
        (
            "profiles_without_traits",
            "profiles without traits",
            s.profiles_without_traits,
        ),
        (
            "profiles_over_identifier_limits",
            "profiles above an identifier limit",
            Some(s.profiles_over_identifier_limits),
        ),
    ];
    for (key, label, value) in rows {
        let _ = writeln!(
            page,
            "<tr><th>{}</th><td class=\"n\" data-key=\"{key}\">{}</td></tr>",
            esc(label),
            value.map_or_else(|| "n/a".to_string(), |v| v.to_string())
        );
    }
    page.push_str("</table>\n</section>\n");

    section(
        &mut page,
        "Merges and creations per day",
        &format!(
            "<p class=\"legend\"><span style=\"background:{}\"></span>creations<span style=\"background:{}\"></span>merges</p>",
            hex(CREATIONS),
            hex(MERGES)
        ),
        "chart-daily",
        &daily_chart(&report.daily)?,
    );
    section(
        &mut page,
        "Merged profiles by size",
        "<p>Profiles of two segment_ids or more, by the number of segment_ids that resolve to them.</p>",
        "chart-sizes",
        &sizes_chart(&report.profile_sizes)?,
    );
    section(
        &mut page,
        "Profiles above identifier limits",
        "<p>Per external_id_type, the profiles holding more identifiers of it than Segment's default limit (user_id: 1, any other type: 5), over all time.</p>",
        "chart-limits",
        &limits_chart(report)?,
    );

    page.push_str("<section id=\"identifier-limits\">\n<h2>Identifiers per profile</h2>\n<table>\n<tr><th>external_id_type</th><th>limit</th><th>profiles</th><th>above limit</th><th>most on one profile</th></tr>\n");
    for l in &report.limits {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&l.external_id_type),
            l.limit_per_profile,
            l.profiles,
            l.profiles_over_limit,
            l.max_per_profile
        );
    }
    page.push_str("</table>\n</section>\n");

    let _ = write!(
        page,
        "<section id=\"missing-recursive\">\n<h2>Missing recursive entries</h2>\n<p>{} segment_id(s) whose latest id_graph_updates row points at a profile merged elsewhere since (the first {} listed); psync-lake follows the chain, a one-hop join would not.</p>\n<table>\n<tr><th>segment_id</th><th>points to</th><th>canonical now</th></tr>\n",
        s.missing_recursive_entries, LISTED_MISSING
    );
    for (sid, to, canonical) in &report.missing_recursive {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(sid),
            esc(to),
            esc(canonical)
        );
    }
    page.push_str("</table>\n</section>\n</body>\n</html>\n");
    Ok(page)
}

/// The short text summary at the top of the page (also printed by the CLI).
pub fn summary_text(report: &Report) -> String {
    let s = &report.summary;
    let busiest = report
        .daily
        .iter()
        .filter(|d| d.day.is_some())
        .max_by_key(|d| (d.merges, std::cmp::Reverse(d.day)));
    let mut text = format!(
        "{} segment_ids resolve to {} profiles ({} merged away; {} profiles hold two or more, the largest {}). {} profiles were created and {} merges recorded",
        s.segment_ids,
        s.profiles,
        s.merged_away(),
        s.merged_profiles,
        s.largest_profile,
        s.creations,
        s.merges
    );
    match busiest {
        Some(d) if d.merges > 0 => {
            let _ = write!(
                text,
                "; the busiest day, {}, had {} merges.",
                date(d),
                d.merges
            );
        }
        _ => text.push('.'),
    }
    let _ = write!(
        text,
        " {} merge cycles were broken; {} recursive entries are missing; ",
        s.cycles_broken, s.missing_recursive_entries
    );
    match s.profiles_without_traits {
        Some(n) => {
            let _ = write!(text, "{n} profiles have no trait; ");
        }
        None => text
            .push_str("profiles without traits were not counted (the run had no profile_traits); "),
    }
    let _ = write!(
        text,
        "{} profiles hold more identifiers of some type than its limit.",
        s.profiles_over_identifier_limits
    );
    text
}

fn section(page: &mut String, title: &str, intro: &str, id: &str, svg: &str) {
    let _ = write!(
        page,
        "<section>\n<h2>{}</h2>\n{intro}\n<figure id=\"{id}\">\n{svg}</figure>\n</section>\n",
        esc(title)
    );
}

/// HTML (and XML) text escaping.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

fn date_of(day: i32) -> String {
    chrono::DateTime::from_timestamp(i64::from(day) * 86_400, 0)
        .map_or_else(|| day.to_string(), |d| d.format("%Y-%m-%d").to_string())
}

fn date(d: &Day) -> String {
    d.day.map_or_else(|| "unknown".into(), date_of)
}

fn chart_err(chart: &'static str) -> impl Fn(String) -> ReportError {
    move |message| ReportError::Chart { chart, message }
}

/// Draws into an SVG string of the page's chart size.
fn svg(
    chart: &'static str,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String>,
) -> Result<String, ReportError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| chart_err(chart)(e.to_string()))?;
        draw(&root).map_err(chart_err(chart))?;
        root.present()
            .map_err(|e| chart_err(chart)(e.to_string()))?;
    }
    Ok(out)
}

fn no_data(root: &DrawingArea<SVGBackend<'_>, Shift>, what: &str) -> Result<(), String> {
    root.draw(&Text::new(
        format!("no {what}"),
        ((WIDTH / 2 - 40) as i32, (HEIGHT / 2) as i32),
        ("sans-serif", 16).into_font(),
    ))
    .map_err(|e| e.to_string())
}

fn daily_chart(days: &[Day]) -> Result<String, ReportError> {
    let dated: Vec<&Day> = days.iter().filter(|d| d.day.is_some()).collect();
    svg("chart-daily", |root| {
        let (Some(first), Some(last)) = (
            dated.iter().filter_map(|d| d.day).min(),
            dated.iter().filter_map(|d| d.day).max(),
        ) else {
            return no_data(root, "creations or merges");
        };
        let top = dated
            .iter()
            .map(|d| d.creations.max(d.merges))
            .max()
            .unwrap_or(1)
            .max(1);
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_right(40)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(first..last.max(first + 1), 0i64..top + top / 10 + 1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .x_labels(8)
            .x_label_formatter(&|d| date_of(*d))
            .y_desc("per day")
            .draw()
            .map_err(|e| e.to_string())?;
        for (color, get) in [
            (CREATIONS, (|d: &Day| d.creations) as fn(&Day) -> i64),
            (MERGES, |d: &Day| d.merges),
        ] {
            chart
                .draw_series(LineSeries::new(
                    dated.iter().filter_map(|d| d.day.map(|x| (x, get(d)))),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

fn sizes_chart(sizes: &[(i64, i64)]) -> Result<String, ReportError> {
    let merged: Vec<(i64, i64)> = sizes.iter().copied().filter(|(s, _)| *s >= 2).collect();
    svg("chart-sizes", |root| {
        let Some(largest) = merged.iter().map(|(s, _)| *s).max() else {
            return no_data(root, "merged profiles");
        };
        let top = merged.iter().map(|(_, p)| *p).max().unwrap_or(1).max(1);
        // A log scale: a few huge profiles (a shared device, a test user_id) are
        // what this chart is for, and they sit next to thousands of pairs.
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_right(40)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(
                1.5f64..largest as f64 + 0.5,
                (0.8f64..top as f64 * 2.0).log_scale(),
            )
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .x_desc("segment_ids per profile")
            .y_desc("profiles (log scale)")
            .x_labels(usize::try_from(largest - 1).unwrap_or(12).clamp(1, 12))
            // Sizes are whole numbers: label only those.
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-9 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(merged.iter().map(|(s, p)| {
                let x = *s as f64;
                Rectangle::new([(x - 0.35, 0.8), (x + 0.35, *p as f64)], BARS.filled())
            }))
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

fn limits_chart(report: &Report) -> Result<String, ReportError> {
    let limits = &report.limits;
    svg("chart-limits", |root| {
        if limits.is_empty() {
            return no_data(root, "identifiers");
        }
        let n = u32::try_from(limits.len()).unwrap_or(u32::MAX);
        let top = limits
            .iter()
            .map(|l| l.profiles_over_limit)
            .max()
            .unwrap_or(0)
            .max(1);
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_right(40)
            .x_label_area_size(36)
            .y_label_area_size(56)
            // `a..b` segmented has a segment per value of `a..=b`.
            .build_cartesian_2d(
                (0..n.saturating_sub(1).max(1)).into_segmented(),
                0i64..top + top / 10 + 1,
            )
            .map_err(|e| e.to_string())?;
        let names: Vec<String> = limits.iter().map(|l| l.external_id_type.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .x_labels(names.len())
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .y_desc("profiles above the limit")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(MERGES.filled())
                    .margin(24)
                    .data((0..n).zip(limits.iter().map(|l| l.profiles_over_limit))),
            )
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use psync_core::health::{Limit, Summary};

    #[test]
    fn an_empty_report_still_has_every_chart() {
        let page = render(&Report::default(), "/tmp/x").unwrap();
        for id in CHARTS {
            assert!(
                page.contains(&format!("<figure id=\"{id}\">\n<svg")),
                "{id}"
            );
        }
        assert!(page.contains("no merged profiles"));
    }

    #[test]
    fn numbers_and_names_are_on_the_page_escaped() {
        let report = Report {
            summary: Summary {
                run_id: "r<1>".into(),
                segment_ids: 10,
                profiles: 7,
                ..Default::default()
            },
            limits: vec![Limit {
                external_id_type: "e&mail".into(),
                limit_per_profile: 5,
                profiles: 3,
                profiles_over_limit: 1,
                max_per_profile: 6,
            }],
            daily: vec![Day {
                day: Some(19_723),
                creations: 4,
                merges: 2,
            }],
            ..Default::default()
        };
        let page = render(&report, "/d").unwrap();
        assert!(page.contains("r&lt;1&gt;"));
        assert!(page.contains("e&amp;mail"));
        assert!(page.contains("data-key=\"merged_away\">3<"));
        assert!(page.contains("2024-01-01"));
    }
}
