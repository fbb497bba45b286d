//! Keyword arguments as the CLI's flags: the same names (`--s3-endpoint` is
//! `s3_endpoint=`), parsed by the same code (sizes, durations, instants).

use psync_core::View;
use psync_lake_io::{AzureOptions, DeltaAt, StoreOptions};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::errors::config;

/// The store settings `Lake(**storage_options)` takes, as the CLI's flags.
const STORE_KEYS: &[&str] = &[
    "s3_endpoint",
    "s3_region",
    "s3_allow_http",
    "retries",
    "request_timeout",
    "connect_timeout",
    "azure_account",
    "azure_access_key",
    "azure_sas",
    "azure_endpoint",
    "azure_allow_http",
];

/// The store options of `kwargs` (the AWS_* / AZURE_* environment is read first
/// by the stores themselves, as in the CLI); an unknown key is an error.
pub fn store_options(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<StoreOptions> {
    let Some(kw) = kwargs else {
        return Ok(StoreOptions::default());
    };
    for key in kw.keys() {
        let key: String = key.extract()?;
        if !STORE_KEYS.contains(&key.as_str()) {
            return Err(config(format!(
                "unknown storage option '{key}'; the options are {}",
                STORE_KEYS.join(", ")
            )));
        }
    }
    let text = |k: &str| -> PyResult<Option<String>> {
        kw.get_item(k)?
            .filter(|v| !v.is_none())
            .map(|v| v.extract::<String>())
            .transpose()
    };
    let flag = |k: &str| -> PyResult<Option<bool>> {
        Ok(kw
            .get_item(k)?
            .map(|v| v.is_truthy())
            .transpose()?
            .filter(|b| *b))
    };
    let number = |k: &str, default: u64| -> PyResult<u64> {
        Ok(kw
            .get_item(k)?
            .map(|v| v.extract())
            .transpose()?
            .unwrap_or(default))
    };
    let retries = usize::try_from(number("retries", 3)?).map_err(|e| config(e.to_string()))?;
    Ok(StoreOptions {
        endpoint: text("s3_endpoint")?,
        region: text("s3_region")?,
        allow_http: flag("s3_allow_http")?,
        azure: AzureOptions {
            account: text("azure_account")?,
            access_key: text("azure_access_key")?,
            sas: text("azure_sas")?,
            endpoint: text("azure_endpoint")?,
            allow_http: flag("azure_allow_http")?,
        },
        ..StoreOptions::default()
    }
    .with_timeouts(
        retries,
        number("request_timeout", 60)?,
        number("connect_timeout", 5)?,
    ))
}

/// `source_version=` / `source_timestamp=`: which version of the source's Delta
/// tables to read.
pub fn source_at(version: Option<u64>, timestamp: Option<&str>) -> PyResult<DeltaAt> {
    match (version, timestamp) {
        (Some(_), Some(_)) => Err(config("give source_version or source_timestamp, not both")),
        (Some(v), None) => Ok(DeltaAt::Version(v)),
        // `parse_instant` gives microseconds; the Delta log keeps milliseconds.
        (None, Some(t)) => Ok(DeltaAt::Timestamp(instant(t)?.div_euclid(1000))),
        (None, None) => Ok(DeltaAt::Latest),
    }
}

/// An instant (RFC 3339 or a date) in µs since the epoch.
pub fn instant(s: &str) -> PyResult<i64> {
    psync_core::parse::parse_instant(s).map_err(config)
}

/// A size: a number of bytes, or text such as `"2G"`.
pub fn size(v: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    let Some(v) = v.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    if let Ok(s) = v.cast::<PyString>() {
        return psync_core::parse::parse_size(&s.to_cow()?)
            .map(Some)
            .map_err(config);
    }
    let n: usize = v.extract()?;
    if n == 0 {
        return Err(config("a size must be at least one byte"));
    }
    Ok(Some(n))
}

/// A duration: seconds (a number), or text such as `"60s"` or `"2m"`.
pub fn duration(v: &Bound<'_, PyAny>) -> PyResult<std::time::Duration> {
    if let Ok(s) = v.cast::<PyString>() {
        return psync_core::parse::parse_duration(&s.to_cow()?).map_err(config);
    }
    let secs: f64 = v.extract()?;
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| config(format!("{secs}: {e}")))
}

/// Views: a list of names, or one comma-separated string; `default` when `None`.
pub fn views(v: Option<&Bound<'_, PyAny>>, default: &[View]) -> PyResult<Vec<View>> {
    let Some(v) = v.filter(|v| !v.is_none()) else {
        return Ok(default.to_vec());
    };
    let names: Vec<String> = match v.cast::<PyString>() {
        Ok(s) => s.to_cow()?.split(',').map(str::to_string).collect(),
        Err(_) => v.extract()?,
    };
    let views = names
        .iter()
        .map(|n| n.trim().parse::<View>().map_err(config))
        .collect::<PyResult<Vec<View>>>()?;
    if views.is_empty() {
        return Ok(default.to_vec());
    }
    Ok(views)
}

/// One of `choices` for the argument `name`.
pub fn choice<'a>(name: &str, value: &'a str, choices: &[&str]) -> PyResult<&'a str> {
    if choices.contains(&value) {
        Ok(value)
    } else {
        Err(config(format!(
            "{name}='{value}' is not one of {}",
            choices.join(", ")
        )))
    }
}
