//! Search parameters: the tables each resource declares, the parser they drive, and the
//! value syntaxes FHIR R4 defines (§3.1.1 Search: token, reference, date with prefixes).
//!
//! A [`ResourceDefinition`] lists what a resource type answers; [`Parameters::parse`]
//! accepts exactly those names (plus the [`RESULT_PARAMETERS`]) and the CapabilityStatement
//! is written from the same lists ([`super::capability`]).

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use crate::error::{Error, FhirError};

/// A search parameter's FHIR type (`SearchParamType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterType {
    /// `token`: `[system]|[code]`.
    Token,
    /// `reference`: `Type/id` or `id`.
    Reference,
    /// `date`: with prefixes `eq`, `ge`, `gt`, `le`, `lt`.
    Date,
    /// `number`.
    Number,
    /// `string`.
    String,
    /// `special` (the paging cursor).
    Special,
}

impl ParameterType {
    /// The FHIR code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Reference => "reference",
            Self::Date => "date",
            Self::Number => "number",
            Self::String => "string",
            Self::Special => "special",
        }
    }
}

/// One search parameter a resource type supports.
#[derive(Debug, Clone, Copy)]
pub struct ParameterDefinition {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub kind: ParameterType,
    /// The definition's canonical URL, for the standard ones.
    pub definition: Option<&'static str>,
    /// What it does here (the CapabilityStatement's documentation).
    pub documentation: &'static str,
}

/// What a resource type offers.
#[derive(Debug, Clone, Copy)]
pub struct ResourceDefinition {
    /// The resource type.
    pub kind: &'static str,
    /// What it holds here and who may read it.
    pub documentation: &'static str,
    /// Its search parameters (result parameters such as `_count` included where taken).
    pub parameters: &'static [ParameterDefinition],
    /// Operations on an instance: (name, canonical definition).
    pub operations: &'static [(&'static str, &'static str)],
}

impl ResourceDefinition {
    fn parameter(&self, name: &str) -> Option<&ParameterDefinition> {
        self.parameters
            .iter()
            .chain(RESULT_PARAMETERS)
            .find(|parameter| parameter.name == name)
    }
}

/// Parameters every search takes.
pub const RESULT_PARAMETERS: &[ParameterDefinition] = &[
    ParameterDefinition {
        name: "_format",
        kind: ParameterType::String,
        definition: None,
        documentation: "json, application/json or application/fhir+json; any other format is refused with 415",
    },
    ParameterDefinition {
        name: "_pretty",
        kind: ParameterType::String,
        definition: None,
        documentation: "true: indented JSON",
    },
];

/// `_count`, for the resources that page.
pub const COUNT: ParameterDefinition = ParameterDefinition {
    name: "_count",
    kind: ParameterType::Number,
    definition: None,
    documentation: "entries per page, 1 to 1000 (default 50); 0 answers the total only",
};

/// `_cursor`, the opaque position in a paged search (from `next` and `previous` links).
pub const CURSOR: ParameterDefinition = ParameterDefinition {
    name: "_cursor",
    kind: ParameterType::Special,
    definition: None,
    documentation: "opaque paging position, only as given in a Bundle's next or previous link; \
                    bound to its search and to the server process that issued it",
};

/// `_summary`, of which `count` is supported.
pub const SUMMARY: ParameterDefinition = ParameterDefinition {
    name: "_summary",
    kind: ParameterType::Token,
    definition: None,
    documentation: "count: the total only, no entries",
};

/// `patient`, for resources about one patient.
pub const PATIENT: ParameterDefinition = ParameterDefinition {
    name: "patient",
    kind: ParameterType::Reference,
    definition: Some("http://hl7.org/fhir/SearchParameter/clinical-patient"),
    documentation: "the patient (Patient/id or id); required of staff and authorities, \
                    a patient's own card reads their own records without it",
};

/// The largest page.
pub const MAX_COUNT: usize = 1000;
/// The page size when `_count` is absent.
pub const DEFAULT_COUNT: usize = 50;

/// A request's search parameters, checked against a resource's definition.
#[derive(Debug, Clone)]
pub struct Parameters {
    kind: &'static str,
    pairs: Vec<(String, String)>,
}

impl Parameters {
    /// Checks every parameter name against `definition` (strict unless `lenient`, when
    /// unknown ones are dropped) and keeps the known ones in order.
    pub fn parse(
        definition: &ResourceDefinition,
        query: &[(String, String)],
        lenient: bool,
    ) -> Result<Self, Error> {
        let mut pairs = Vec::new();
        for (name, value) in query {
            if definition.parameter(name).is_some() {
                pairs.push((name.clone(), value.clone()));
            } else if !lenient {
                return Err(FhirError::UnknownParameter {
                    resource: definition.kind,
                    parameter: name.clone(),
                }
                .into());
            }
        }
        Ok(Self {
            kind: definition.kind,
            pairs,
        })
    }

    /// The resource type searched.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Every value of `name`, in order (repeated parameters are ANDed).
    pub fn all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = name.to_owned();
        self.pairs
            .iter()
            .filter(move |(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The one value of `name`; repeating it is an error.
    pub fn one(&self, name: &str) -> Result<Option<&str>, Error> {
        let mut values = self.all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(bad(name, "give it once"));
        }
        Ok(first)
    }

    /// The pairs that define the search (all but `_cursor`, `_format`, `_pretty`),
    /// sorted: what a cursor is bound to and links repeat.
    pub fn canonical(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = self
            .pairs
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "_cursor" | "_format" | "_pretty"))
            .cloned()
            .collect();
        pairs.sort();
        pairs
    }

    /// The query string of the search with `extra` pairs added (for links).
    pub fn query_with(&self, extra: &[(&str, &str)]) -> String {
        let mut serializer = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.canonical() {
            serializer.append_pair(&name, &value);
        }
        for (name, value) in extra {
            serializer.append_pair(name, value);
        }
        serializer.finish()
    }

    /// `_count`: the page size (0: total only).
    pub fn count(&self) -> Result<usize, Error> {
        match self.one("_count")? {
            None => Ok(DEFAULT_COUNT),
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|count| *count <= MAX_COUNT)
                .ok_or_else(|| bad("_count", &format!("an integer from 0 to {MAX_COUNT}"))),
        }
    }

    /// Whether `_summary=count` (or `_count=0`) asks for the total only.
    pub fn summary_count(&self) -> Result<bool, Error> {
        match self.one("_summary")? {
            None => Ok(self.count()? == 0),
            Some("count") => Ok(true),
            Some("false") => Ok(self.count()? == 0),
            Some(other) => Err(bad(
                "_summary",
                &format!("{other:?} is not supported: only count"),
            )),
        }
    }

    /// The patient id of `patient` (and of `subject` when given as a Patient reference).
    pub fn patient(&self) -> Result<Option<String>, Error> {
        let mut found: Option<String> = None;
        for name in ["patient", "subject"] {
            for value in self.all(name) {
                if value.contains(',') {
                    return Err(bad(name, "one patient per search"));
                }
                let id = reference_id(value, "Patient")
                    .ok_or_else(|| bad(name, "a Patient reference: Patient/<id> or <id>"))?;
                if found.as_deref().is_some_and(|other| other != id) {
                    return Err(bad(name, "names two patients; one patient per search"));
                }
                found = Some(id.to_owned());
            }
        }
        Ok(found)
    }
}

/// A `BadParameter` error.
pub fn bad(parameter: &str, reason: &str) -> Error {
    FhirError::BadParameter {
        parameter: parameter.to_owned(),
        reason: reason.to_owned(),
    }
    .into()
}

/// The id in a reference value `Type/id`, `id` or `https://…/Type/id`, if it names
/// `kind` (or no type).
pub fn reference_id<'a>(value: &'a str, kind: &str) -> Option<&'a str> {
    let value = value.trim();
    let id = match value.rsplit_once('/') {
        None => value,
        Some((prefix, id)) => {
            let named = prefix.rsplit('/').next().unwrap_or(prefix);
            if named != kind {
                return None;
            }
            id
        }
    };
    (!id.is_empty()).then_some(id)
}

/// A token value: `[system]|[code]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token<'a> {
    /// `None`: any system; `Some("")`: no system.
    pub system: Option<&'a str>,
    /// `None`: any code in the system.
    pub code: Option<&'a str>,
}

impl<'a> Token<'a> {
    /// Parses one token (no commas).
    pub fn parse(text: &'a str) -> Self {
        match text.split_once('|') {
            None => Self {
                system: None,
                code: Some(text),
            },
            Some((system, code)) => Self {
                system: Some(system),
                code: (!code.is_empty()).then_some(code),
            },
        }
    }

    /// Whether a coding `system`/`code` matches.
    pub fn matches(&self, system: &str, code: &str) -> bool {
        self.system.is_none_or(|wanted| wanted == system) && self.code.is_none_or(|c| c == code)
    }
}

/// An interval of µs since the epoch: `from` inclusive, `to` inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// The first µs included, if bounded below.
    pub from: Option<i64>,
    /// The last µs included, if bounded above.
    pub to: Option<i64>,
}

impl Interval {
    /// Everything.
    pub const ALL: Self = Self {
        from: None,
        to: None,
    };

    fn and(self, other: Self) -> Self {
        Self {
            from: match (self.from, other.from) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            to: match (self.to, other.to) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    /// Whether `micros` is inside.
    pub fn contains(&self, micros: i64) -> bool {
        self.from.is_none_or(|from| micros >= from) && self.to.is_none_or(|to| micros <= to)
    }
}

/// The instants every `name` date parameter allows, ANDed. Each value is
/// `[prefix]date` with prefix `eq` (default), `ge`, `gt`, `le` or `lt`, and a date of
/// any FHIR precision (`2026`, `2026-12`, `2026-12-08`, `2026-12-08T10:00Z`, seconds and
/// fractions optional); a value stands for the whole period its precision names, and the
/// prefixes compare instants against that period as FHIR R4 §3.1.1.5.6 defines.
pub fn date_interval(parameters: &Parameters, name: &str) -> Result<Interval, Error> {
    let mut interval = Interval::ALL;
    for value in parameters.all(name) {
        if value.contains(',') {
            return Err(bad(
                name,
                "one date per parameter; repeat the parameter to AND",
            ));
        }
        let (prefix, text) = match value.get(..2) {
            Some(p @ ("eq" | "ge" | "gt" | "le" | "lt")) => (p, &value[2..]),
            Some("ne" | "sa" | "eb" | "ap") => {
                return Err(bad(
                    name,
                    "the prefixes ne, sa, eb and ap are not supported",
                ));
            }
            _ => ("eq", value),
        };
        let (start, end) = period(text).ok_or_else(|| {
            bad(
                name,
                &format!(
                    "{text:?} is not a FHIR date: YYYY, YYYY-MM, YYYY-MM-DD or \
                     YYYY-MM-DDThh:mm[:ss[.fff]] with Z or ±hh:mm"
                ),
            )
        })?;
        // [start, end) is the period the value names; an instant t is a point period.
        let last = end.saturating_sub(1);
        let bound = match prefix {
            "ge" => Interval {
                from: Some(start),
                to: None,
            },
            "gt" => Interval {
                from: Some(end),
                to: None,
            },
            "le" => Interval {
                from: None,
                to: Some(last),
            },
            "lt" => Interval {
                from: None,
                to: Some(start.saturating_sub(1)),
            },
            _ => Interval {
                from: Some(start),
                to: Some(last),
            },
        };
        interval = interval.and(bound);
    }
    Ok(interval)
}

/// The period `[start, end)` in µs that a FHIR date or dateTime names.
pub fn period(text: &str) -> Option<(i64, i64)> {
    let micros = |time: OffsetDateTime| i64::try_from(time.unix_timestamp_nanos() / 1000).ok();
    let date = |year: i32, month: u8, day: u8| {
        Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
    };
    let midnight = |date: Date| PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc();
    let digits =
        |part: &str, len: usize| part.len() == len && part.bytes().all(|b| b.is_ascii_digit());
    match text.len() {
        4 if digits(text, 4) => {
            let year = text.parse().ok()?;
            Some((
                micros(midnight(date(year, 1, 1)?))?,
                micros(midnight(date(year.checked_add(1)?, 1, 1)?))?,
            ))
        }
        7 => {
            let (year, month) = text.split_once('-')?;
            if !digits(year, 4) || !digits(month, 2) {
                return None;
            }
            let (year, month): (i32, u8) = (year.parse().ok()?, month.parse().ok()?);
            let start = date(year, month, 1)?;
            let next = if month == 12 {
                date(year.checked_add(1)?, 1, 1)?
            } else {
                date(year, month + 1, 1)?
            };
            Some((micros(midnight(start))?, micros(midnight(next))?))
        }
        10 => {
            let parsed = Date::parse(
                text,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .ok()?;
            let start = midnight(parsed);
            Some((micros(start)?, micros(start + time::Duration::DAY)?))
        }
        _ => {
            // A dateTime: FHIR lets seconds be left out (hh:mm); the precision given is
            // the period's length.
            let (clock, offset_at) = split_offset(text)?;
            let (date_part, time_part) = clock.split_once('T')?;
            let (whole, fraction) = match time_part.split_once('.') {
                Some((whole, fraction)) if !fraction.is_empty() && fraction.len() <= 9 => {
                    (whole, Some(fraction))
                }
                Some(_) => return None,
                None => (time_part, None),
            };
            let (seconds_given, whole) = match whole.len() {
                5 => (false, format!("{whole}:00")),
                8 => (true, whole.to_owned()),
                _ => return None,
            };
            if fraction.is_some() && !seconds_given {
                return None;
            }
            let normalised = format!(
                "{date_part}T{whole}{}{}",
                fraction.map(|f| format!(".{f}")).unwrap_or_default(),
                &text[offset_at..]
            );
            let time = OffsetDateTime::parse(&normalised, &Rfc3339).ok()?;
            let length: i64 = match fraction {
                None if seconds_given => 1_000_000,
                None => 60_000_000,
                Some(fraction) => 10_i64
                    .pow(6_u32.saturating_sub(u32::try_from(fraction.len()).unwrap_or(6).min(6))),
            };
            let start = micros(time)?;
            Some((start, start.checked_add(length)?))
        }
    }
}

/// Splits `…Z` / `…+hh:mm` / `…-hh:mm` into the clock part and where the offset starts.
fn split_offset(text: &str) -> Option<(&str, usize)> {
    if let Some(clock) = text.strip_suffix('Z') {
        return Some((clock, clock.len()));
    }
    let at = text.len().checked_sub(6)?;
    let sign = text.as_bytes().get(at)?;
    (matches!(sign, b'+' | b'-') && text.get(at..)?.as_bytes().get(3) == Some(&b':'))
        .then(|| (&text[..at], at))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;
    /// 2026-12-08T00:00:00Z.
    const DEC8: i64 = 1_796_688_000_000_000;

    fn parameters(query: &[(&str, &str)]) -> Parameters {
        Parameters {
            kind: "Observation",
            pairs: query
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn periods_follow_the_precision_given() {
        assert_eq!(period("2026-12-08"), Some((DEC8, DEC8 + DAY)));
        assert_eq!(period("2026-12-08T00:00Z"), Some((DEC8, DEC8 + 60_000_000)));
        assert_eq!(
            period("2026-12-08T01:00:00+01:00"),
            Some((DEC8, DEC8 + 1_000_000))
        );
        assert_eq!(
            period("2026-12-08T00:00:00.5Z"),
            Some((DEC8 + 500_000, DEC8 + 600_000))
        );
        let (start, end) = period("2026-12").unwrap();
        assert_eq!(start, DEC8 - 7 * DAY);
        assert_eq!(end, DEC8 + 24 * DAY);
        let (start, end) = period("2026").unwrap();
        assert_eq!(end - start, 365 * DAY);
        for bad in [
            "2026-13",
            "2026-12-32",
            "20261208",
            "2026-12-08T10",
            "2026-12-08T10:00",
            "x",
        ] {
            assert_eq!(period(bad), None, "{bad}");
        }
    }

    #[test]
    fn prefixes_compare_against_the_whole_period() {
        let interval =
            |value: &str| date_interval(&parameters(&[("date", value)]), "date").unwrap();
        assert_eq!(
            interval("2026-12-08"),
            Interval {
                from: Some(DEC8),
                to: Some(DEC8 + DAY - 1)
            }
        );
        assert_eq!(interval("ge2026-12-08").from, Some(DEC8));
        assert_eq!(interval("gt2026-12-08").from, Some(DEC8 + DAY));
        assert_eq!(interval("le2026-12-08").to, Some(DEC8 + DAY - 1));
        assert_eq!(interval("lt2026-12-08").to, Some(DEC8 - 1));
        let both = date_interval(
            &parameters(&[("date", "ge2026-12-08"), ("date", "lt2026-12-09")]),
            "date",
        )
        .unwrap();
        assert_eq!(
            both,
            Interval {
                from: Some(DEC8),
                to: Some(DEC8 + DAY - 1)
            }
        );
        assert!(date_interval(&parameters(&[("date", "ne2026")]), "date").is_err());
    }

    #[test]
    fn tokens_and_references() {
        assert_eq!(
            Token::parse("http://loinc.org|8867-4"),
            Token {
                system: Some("http://loinc.org"),
                code: Some("8867-4")
            }
        );
        assert!(Token::parse("8867-4").matches("http://loinc.org", "8867-4"));
        assert!(!Token::parse("|8867-4").matches("http://loinc.org", "8867-4"));
        assert!(Token::parse("http://loinc.org|").matches("http://loinc.org", "x"));
        assert_eq!(reference_id("Patient/p-1", "Patient"), Some("p-1"));
        assert_eq!(
            reference_id("https://h/fhir/Patient/p-1", "Patient"),
            Some("p-1")
        );
        assert_eq!(reference_id("p-1", "Patient"), Some("p-1"));
        assert_eq!(reference_id("Device/p-1", "Patient"), None);
    }
}
