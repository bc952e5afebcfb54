//! Onboarding a fleet of devices from a CSV file, all or nothing.
//!
//! ```text
//! epc,group,rule,ward,csr
//! urn:epc:tag:sgtin-96:3.0614141.812345.6789,3,128,ward-7,
//! 3074257BF7194E4000001A86,3,128,ward-7,csr/monitor-2.csr
//! ```
//!
//! The EPC may be a tag URI, a pure identity URI or 24 hex digits; `csr` (optional, path
//! relative to the CSV file) names a PKCS#10 request, otherwise a key is generated. Every
//! row is checked before anything is signed: a malformed row, an EPC that appears twice,
//! an EPC that already has a valid certificate, or an output file that already exists is
//! reported with its line number, and nothing is issued. Then the certificates are signed
//! on all cores, the files written (`<EPC hex>.crt`, and `<EPC hex>.key` 0600 for
//! generated keys), and the inventory and audit entries recorded in one transaction; if
//! that fails, the files written are removed again. Generated DSA keys of one batch share
//! their domain parameters ([`crate::key::SubjectKeyGenerator`]).

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use wardseal_core::epc::Sgtin96;
use wardseal_core::identity::{GroupId, Identity, RuleId};

use crate::ca::{Built, SigningCa, now};
use crate::csr::{CsrKey, read_csr};
use crate::error::{BatchError, Error, RowError};
use crate::key::{KeyAlgorithm, SubjectKeyGenerator, create_private_file};
use crate::profile::Request;

/// What `batch` does.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// The CSV file.
    pub csv: PathBuf,
    /// Where certificates and generated keys go (created if missing).
    pub out_dir: PathBuf,
    /// Algorithm of generated keys.
    pub algorithm: KeyAlgorithm,
    /// Validity in days (the device profile's default when absent).
    pub validity_days: Option<u32>,
    /// Signing threads (all cores when 0).
    pub threads: usize,
}

/// What `batch` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BatchReport {
    /// Certificates issued.
    pub issued: usize,
    /// Keys generated (the rest came from CSRs).
    pub generated_keys: usize,
    /// Where the files are.
    pub out_dir: PathBuf,
}

/// What was issued and where (`wardseal-pki batch` adds how long it took).
impl fmt::Display for BatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "issued {} device certificates ({} keys generated) into {}",
            self.issued,
            self.generated_keys,
            self.out_dir.display()
        )
    }
}

struct Row {
    line: u64,
    request: Request,
    csr: Option<CsrKey>,
    name: String,
}

fn read_rows(options: &BatchOptions) -> Result<Vec<Row>, Error> {
    let path = &options.csv;
    let header_error = |reason: String| BatchError::Header {
        path: path.clone(),
        reason,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .comment(Some(b'#'))
        .from_path(path)
        .map_err(|error| header_error(error.to_string()))?;
    let headers = reader
        .headers()
        .map_err(|error| header_error(error.to_string()))?
        .clone();
    let names: Vec<String> = headers.iter().map(str::to_ascii_lowercase).collect();
    if names.len() < 4
        || names[..4] != ["epc", "group", "rule", "ward"]
        || names.get(4).is_some_and(|name| name != "csr")
    {
        return Err(header_error(format!(
            "header is {:?}",
            headers.iter().collect::<Vec<_>>()
        ))
        .into());
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, csv::Position::line);
                errors.push(RowError {
                    line,
                    reason: error.to_string(),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, csv::Position::line);
        let mut fail = |reason: String| errors.push(RowError { line, reason });
        if record.len() < 4 || record.len() > names.len() {
            fail(format!("{} fields, expected {}", record.len(), names.len()));
            continue;
        }
        let field = |index: usize| record.get(index).unwrap_or_default();
        let epc = match field(0).parse::<Sgtin96>() {
            Ok(epc) => epc,
            Err(error) => {
                fail(format!("malformed EPC {:?}: {error}", field(0)));
                continue;
            }
        };
        let Ok(group) = field(1).parse::<u32>() else {
            fail(format!(
                "group {:?} is not a number from 0 to 4294967295",
                field(1)
            ));
            continue;
        };
        let Ok(rule) = field(2).parse::<u32>() else {
            fail(format!(
                "rule {:?} is not a number from 0 to 4294967295",
                field(2)
            ));
            continue;
        };
        let uri = epc.pure_identity_uri();
        let name = epc.to_hex();
        if let Some(first) = seen.get(&uri) {
            fail(format!("duplicate EPC {uri} (first on line {first})"));
            continue;
        }
        seen.insert(uri, line);
        let mut request = Request::new(Identity::device(epc, GroupId(group), RuleId(rule)));
        request.ward = Some(field(3).to_owned()).filter(|ward| !ward.is_empty());
        request.validity_days = options.validity_days;
        if let Err(error) = request.check() {
            fail(error.to_string());
            continue;
        }
        let csr = match field(4) {
            "" => None,
            csr_path => {
                let csr_path = base.join(csr_path);
                match fs::read(&csr_path) {
                    Ok(bytes) => match read_csr(&bytes) {
                        Ok(csr) => Some(csr),
                        Err(error) => {
                            fail(format!("{}: {error}", csr_path.display()));
                            continue;
                        }
                    },
                    Err(error) => {
                        fail(format!("{}: {error}", csr_path.display()));
                        continue;
                    }
                }
            }
        };
        for (file, wanted) in [
            (format!("{name}.crt"), true),
            (format!("{name}.key"), csr.is_none()),
        ] {
            if wanted && options.out_dir.join(&file).exists() {
                fail(format!(
                    "{} already exists",
                    options.out_dir.join(file).display()
                ));
            }
        }
        rows.push(Row {
            line,
            request,
            csr,
            name,
        });
    }
    if !errors.is_empty() {
        errors.sort_by_key(|error| error.line);
        return Err(BatchError::Rows(errors).into());
    }
    if rows.is_empty() {
        return Err(BatchError::Empty { path: path.clone() }.into());
    }
    Ok(rows)
}

/// A signed row: its certificate and, for generated keys, the key's PEM.
struct Signed {
    built: Built,
    key_pem: Option<zeroize::Zeroizing<String>>,
    name: String,
}

impl SigningCa<'_> {
    /// Issues a certificate for every row of the CSV file, or none.
    pub async fn batch(&self, options: &BatchOptions, actor: &str) -> Result<BatchReport, Error> {
        let issued_at = now();
        self.check_valid(issued_at)?;
        let rows = read_rows(options)?;
        // The same check runs again inside the transaction; this one names the lines.
        let valid = self.ca().inventory().valid_epcs_now(issued_at).await?;
        let conflicts: Vec<RowError> = rows
            .iter()
            .filter_map(|row| {
                let epc = row.request.identity.device_id()?.pure_identity_uri();
                let serial = valid.get(&epc)?;
                Some(RowError {
                    line: row.line,
                    reason: format!("EPC {epc} already has a valid certificate (serial {serial})"),
                })
            })
            .collect();
        if !conflicts.is_empty() {
            return Err(BatchError::Rows(conflicts).into());
        }
        let threads = match options.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let chunk = rows.len().div_ceil(threads);
        let generator = &SubjectKeyGenerator::new(options.algorithm);
        let signed: Vec<Result<Signed, Error>> = std::thread::scope(|scope| {
            let workers: Vec<_> = rows
                .chunks(chunk.max(1))
                .map(|rows| {
                    scope.spawn(move || {
                        rows.iter()
                            .map(|row| self.sign_row(row, generator, issued_at))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| {
                    worker.join().unwrap_or_else(|_| {
                        vec![Err(Error::encoding(
                            "sign the batch",
                            crate::error::Cause::message("a signing thread panicked"),
                        ))]
                    })
                })
                .collect()
        });
        let signed: Vec<Signed> = signed.into_iter().collect::<Result<_, _>>()?;
        fs::create_dir_all(&options.out_dir)
            .map_err(|error| Error::io("create", &options.out_dir, error))?;
        let mut written = Vec::with_capacity(signed.len() * 2);
        let result = write_files(&options.out_dir, &signed, &mut written);
        let result = match result {
            Ok(()) => {
                let records: Vec<_> = signed
                    .iter()
                    .map(|signed| signed.built.record.clone())
                    .collect();
                self.record(&records, actor, "batch").await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            for path in &written {
                let _ = fs::remove_file(path);
            }
            return Err(error);
        }
        Ok(BatchReport {
            issued: signed.len(),
            generated_keys: signed
                .iter()
                .filter(|signed| signed.key_pem.is_some())
                .count(),
            out_dir: options.out_dir.clone(),
        })
    }

    fn sign_row(
        &self,
        row: &Row,
        generator: &SubjectKeyGenerator,
        now: time::OffsetDateTime,
    ) -> Result<Signed, Error> {
        match &row.csr {
            Some(csr) => Ok(Signed {
                built: self.build(&row.request, csr.public_key().certified(), now, None)?,
                key_pem: None,
                name: row.name.clone(),
            }),
            None => {
                let key = generator.generate()?;
                Ok(Signed {
                    built: self.build(&row.request, key.certified(), now, None)?,
                    key_pem: Some(key.to_pkcs8_pem()?),
                    name: row.name.clone(),
                })
            }
        }
    }
}

fn write_files(out_dir: &Path, signed: &[Signed], written: &mut Vec<PathBuf>) -> Result<(), Error> {
    use std::io::Write;
    for signed in signed {
        if let Some(pem) = &signed.key_pem {
            let path = out_dir.join(format!("{}.key", signed.name));
            let mut file = create_private_file(&path)?;
            written.push(path.clone());
            file.write_all(pem.as_bytes())
                .map_err(|error| Error::io("write", &path, error))?;
        }
        let path = out_dir.join(format!("{}.crt", signed.name));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|error| Error::io("create", &path, error))?;
        written.push(path.clone());
        file.write_all(signed.built.pem.as_bytes())
            .map_err(|error| Error::io("write", &path, error))?;
    }
    Ok(())
}
