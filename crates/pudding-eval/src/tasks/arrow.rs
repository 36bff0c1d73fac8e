//! The task data's Arrow IPC *stream* files (the `data-00000-of-00001.arrow` files that
//! Hugging Face `datasets` writes with `save_to_disk`), read with arrow-rs's
//! [`StreamDecoder`] and turned into rows of [`serde_json::Value`]s, so the task builders
//! see the shape Python's `datasets` gives (`Sequence` of a dict becomes a dict of lists).
//!
//! Column types turned into values: Null, Boolean, Int8-64, UInt8-64, Float32/64, Utf8,
//! LargeUtf8, List, LargeList and Struct, with nulls. Anything else (dictionaries, views,
//! unions, ...) is an error naming the column rather than a guess; compressed bodies are
//! refused by the decoder (built without its codecs). A stream must end with its
//! end-of-stream marker: arrow-rs stops quietly at the end of the bytes, which would read
//! a file cut between two record batches as a shorter split.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrowPrimitiveType, OffsetSizeTrait};
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_schema::DataType;
use serde_json::{Map, Number, Value};

/// One decoded row: column name to value.
pub(crate) type Row = Map<String, Value>;

type Result<T> = std::result::Result<T, String>;

/// The most rows a stream may hold. Task splits have at most tens of thousands of rows; a
/// larger count is a corrupt file, refused before its rows are built (a column of nulls
/// costs no body bytes, so the body's size alone would not bound it).
const MAX_ROWS: usize = 1 << 20;

/// The most values (rows times leaf columns, list elements included) one record batch
/// may expand to: real task batches hold well under a million; a few hundred null columns
/// of a million rows would otherwise ask for gigabytes of `Value`s.
const MAX_BATCH_VALUES: usize = 1 << 24;

/// The end-of-stream marker: a continuation token and a zero metadata length (format
/// 0.15 and later), or the zero length alone (earlier writers).
const END_MARKER: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
const LEGACY_END_MARKER: [u8; 4] = [0, 0, 0, 0];

/// Decodes a whole Arrow IPC stream into rows (all record batches, in order).
pub(crate) fn read_stream(bytes: &[u8]) -> Result<Vec<Row>> {
    let messages = if let Some(messages) = bytes.strip_suffix(&END_MARKER) {
        messages
    } else if let Some(messages) = bytes.strip_suffix(&LEGACY_END_MARKER) {
        messages
    } else {
        // A writer that closed the stream left the marker; without it the file was cut,
        // possibly between two record batches, and reading on would lose rows silently.
        return Err(format!(
            "stream of {} bytes ends without its end-of-stream marker (truncated?)",
            bytes.len()
        ));
    };
    let mut decoder = StreamDecoder::new();
    let mut buffer = Buffer::from(messages.to_vec());
    let mut rows = Vec::new();
    while !buffer.is_empty() {
        let Some(batch) = decoder.decode(&mut buffer).map_err(|e| e.to_string())? else {
            // The decoder met an end-of-stream marker before the final one.
            return Err(format!(
                "{} bytes after an end-of-stream marker",
                buffer.len() + bytes.len() - messages.len()
            ));
        };
        if rows.len().saturating_add(batch.num_rows()) > MAX_ROWS {
            return Err(format!(
                "a record batch declares {} rows after {} (more than {MAX_ROWS} in all)",
                batch.num_rows(),
                rows.len()
            ));
        }
        let mut budget = MAX_BATCH_VALUES;
        let schema = batch.schema();
        let mut columns = Vec::with_capacity(batch.num_columns());
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            let values = values(column.as_ref(), field.name(), &mut budget)?;
            columns.push((field.name().clone(), values.into_iter()));
        }
        for _ in 0..batch.num_rows() {
            let mut row = Map::new();
            for (name, column) in columns.iter_mut() {
                row.insert(name.clone(), column.next().unwrap_or(Value::Null));
            }
            rows.push(row);
        }
    }
    // The messages must end on a message boundary, after the schema.
    decoder.finish().map_err(|e| e.to_string())?;
    if decoder.schema().is_none() {
        return Err("stream has no schema message".into());
    }
    Ok(rows)
}

/// Takes `n` values from `budget`, or errors naming `column`.
fn spend(budget: &mut usize, n: usize, column: &str) -> Result<()> {
    *budget = budget.checked_sub(n).ok_or_else(|| {
        format!("column {column:?}: a record batch expands to more than {MAX_BATCH_VALUES} values")
    })?;
    Ok(())
}

/// The values of `array` as JSON values, one per element (null -> `Value::Null`).
fn values(array: &dyn Array, column: &str, budget: &mut usize) -> Result<Vec<Value>> {
    let n = array.len();
    spend(budget, n, column)?;
    Ok(match array.data_type() {
        DataType::Null => vec![Value::Null; n],
        DataType::Boolean => {
            let a = array.as_boolean();
            each(a, |i| Value::Bool(a.value(i)))
        }
        DataType::Int8 => integers::<Int8Type>(array),
        DataType::Int16 => integers::<Int16Type>(array),
        DataType::Int32 => integers::<Int32Type>(array),
        DataType::Int64 => integers::<Int64Type>(array),
        DataType::UInt8 => integers::<UInt8Type>(array),
        DataType::UInt16 => integers::<UInt16Type>(array),
        DataType::UInt32 => integers::<UInt32Type>(array),
        DataType::UInt64 => integers::<UInt64Type>(array),
        DataType::Float32 => floats::<Float32Type>(array),
        DataType::Float64 => floats::<Float64Type>(array),
        DataType::Utf8 => strings::<i32>(array),
        DataType::LargeUtf8 => strings::<i64>(array),
        DataType::List(_) => lists::<i32>(array, column, budget)?,
        DataType::LargeList(_) => lists::<i64>(array, column, budget)?,
        DataType::Struct(fields) => {
            let a = array.as_struct();
            let mut children = Vec::with_capacity(fields.len());
            for (field, child) in fields.iter().zip(a.columns()) {
                let child_values = values(child.as_ref(), column, budget)?;
                children.push((field.name().clone(), child_values.into_iter()));
            }
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let mut object = Map::new();
                for (name, child) in children.iter_mut() {
                    object.insert(name.clone(), child.next().unwrap_or(Value::Null));
                }
                // Every child advances, a null row's too.
                out.push(if array.is_valid(i) {
                    Value::Object(object)
                } else {
                    Value::Null
                });
            }
            out
        }
        other => return Err(format!("column {column:?}: unsupported Arrow type {other}")),
    })
}

/// `value(i)` for each valid element of `array`, `Value::Null` for each null one.
fn each(array: &dyn Array, value: impl Fn(usize) -> Value) -> Vec<Value> {
    (0..array.len())
        .map(|i| {
            if array.is_valid(i) {
                value(i)
            } else {
                Value::Null
            }
        })
        .collect()
}

fn integers<T: ArrowPrimitiveType>(array: &dyn Array) -> Vec<Value>
where
    T::Native: Into<Number>,
{
    let a = array.as_primitive::<T>();
    each(a, |i| Value::Number(a.value(i).into()))
}

fn floats<T: ArrowPrimitiveType>(array: &dyn Array) -> Vec<Value>
where
    T::Native: Into<f64>,
{
    let a = array.as_primitive::<T>();
    // NaN and infinities have no JSON number: null, as `datasets` gives None.
    each(a, |i| {
        Number::from_f64(a.value(i).into()).map_or(Value::Null, Value::Number)
    })
}

fn strings<O: OffsetSizeTrait>(array: &dyn Array) -> Vec<Value> {
    let a = array.as_string::<O>();
    each(a, |i| Value::String(a.value(i).to_string()))
}

/// Each list element's values: the child array is converted once, then cut by offsets.
fn lists<O: OffsetSizeTrait>(
    array: &dyn Array,
    column: &str,
    budget: &mut usize,
) -> Result<Vec<Value>> {
    let a = array.as_list::<O>();
    let offsets = a.value_offsets();
    // Only the part of the child the offsets cover (a sliced list shares a longer child).
    let first = offsets.first().map_or(0, |o| o.as_usize());
    let last = offsets.last().map_or(0, |o| o.as_usize());
    let child = a.values().slice(first, last - first);
    let child = values(child.as_ref(), column, budget)?;
    (0..a.len())
        .map(|i| {
            if !a.is_valid(i) {
                return Ok(Value::Null);
            }
            let range = offsets[i].as_usize() - first..offsets[i + 1].as_usize() - first;
            // arrow-rs validated the offsets (monotonic, within the child); checked anyway.
            child
                .get(range)
                .map(|elements| Value::Array(elements.to_vec()))
                .ok_or_else(|| format!("column {column:?}: list offsets outside the values"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Type` union tags of the Arrow format's `Schema.fbs`.
    const T_NULL: u8 = 1;
    const T_STRUCT: u8 = 13;

    /// Written by pyarrow (`scripts/reference/arrow_fixture.py`): every supported column
    /// type, with nulls, in two record batches.
    const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/arrow_types.arrow");
    const EXPECTED: &str = include_str!("../../tests/fixtures/arrow_types.json");

    fn expected() -> Value {
        serde_json::from_str(EXPECTED).expect("fixture JSON")
    }

    #[test]
    fn decodes_every_supported_type_as_pyarrow_does() {
        let rows = read_stream(FIXTURE).expect("fixture decodes");
        let want = expected();
        let want_rows = want["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), want_rows.len());
        for (i, (got, want)) in rows.iter().zip(want_rows).enumerate() {
            assert_eq!(&Value::Object(got.clone()), want, "row {i}");
        }
    }

    #[test]
    fn a_stream_cut_between_batches_or_anywhere_is_an_error() {
        let want = expected();
        let cut = want["second_batch_offset"].as_u64().expect("offset") as usize;
        assert!(cut > 0 && cut < FIXTURE.len());
        let err = read_stream(&FIXTURE[..cut]).expect_err("cut between batches");
        assert!(err.contains("end-of-stream"), "{err}");
        // Every other cut point is refused too, never read short and never a panic.
        for len in 0..FIXTURE.len() {
            assert!(
                read_stream(&FIXTURE[..len]).is_err(),
                "cut at {len} accepted"
            );
        }
    }

    /// Offsets of every 16-byte (i64 length, i64 nulls) pair equal to `(len, nulls)`.
    fn find_pairs(bytes: &[u8], len: i64, nulls: i64) -> Vec<usize> {
        let mut pattern = len.to_le_bytes().to_vec();
        pattern.extend_from_slice(&nulls.to_le_bytes());
        bytes
            .windows(16)
            .enumerate()
            .filter(|(_, w)| *w == pattern.as_slice())
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn absurd_row_counts_are_refused_before_allocating() {
        // The first batch's "nothing" column node is (3 values, 3 nulls): declare 2^40.
        let at = find_pairs(FIXTURE, 3, 3);
        assert!(!at.is_empty(), "node not found in the fixture");
        let mut bytes = FIXTURE.to_vec();
        bytes[at[0]..at[0] + 8].copy_from_slice(&(1i64 << 40).to_le_bytes());
        let err = read_stream(&bytes).expect_err("huge node");
        // arrow-rs checks the node against its buffers before building the array.
        assert!(
            err.contains("nothing") && err.contains("1099511627776"),
            "{err}"
        );
    }

    /// An Arrow stream holding only a schema whose first column is a chain of `levels`
    /// structs, each listing the next field twice as its children (a DAG: 2^levels
    /// fields to walk), ending in a Null field; then the end-of-stream marker.
    fn fan_out_stream(levels: usize) -> Vec<u8> {
        // A table: its vtable (field index -> offset in the table), then `size` bytes whose
        // first four are the signed offset back to the vtable. Returns the table position.
        fn table(b: &mut Vec<u8>, n_fields: usize, entries: &[(usize, u16)], size: usize) -> usize {
            let vtable = b.len();
            b.extend_from_slice(&((4 + 2 * n_fields) as u16).to_le_bytes());
            b.extend_from_slice(&(size as u16).to_le_bytes());
            for i in 0..n_fields {
                let off = entries.iter().find(|(j, _)| *j == i).map_or(0, |(_, o)| *o);
                b.extend_from_slice(&off.to_le_bytes());
            }
            let pos = b.len();
            b.extend_from_slice(&((pos - vtable) as i32).to_le_bytes());
            b.resize(pos + size, 0);
            pos
        }
        // Offsets are unsigned and relative to where they are stored: always forward.
        fn point(b: &mut [u8], at: usize, target: usize) {
            b[at..at + 4].copy_from_slice(&((target - at) as u32).to_le_bytes());
        }
        fn vector(b: &mut Vec<u8>, len: usize) -> usize {
            let pos = b.len();
            b.extend_from_slice(&(len as u32).to_le_bytes());
            b.resize(pos + 4 + 4 * len, 0);
            pos
        }
        let mut meta = vec![0u8; 4];
        // Message: header_type (1) = Schema at +4, header (2) at +8.
        let message = table(&mut meta, 4, &[(1, 4), (2, 8)], 12);
        meta[message + 4] = 1;
        point(&mut meta, 0, message);
        // Schema: fields (1) at +4.
        let schema = table(&mut meta, 2, &[(1, 4)], 8);
        point(&mut meta, message + 8, schema);
        let fields = vector(&mut meta, 1);
        point(&mut meta, schema + 4, fields);
        let mut pending = vec![fields + 4];
        for level in 0..=levels {
            // Field: type_type (2) at +4, children (5) at +8.
            let leaf = level == levels;
            let field = if leaf {
                table(&mut meta, 6, &[(2, 4)], 8)
            } else {
                table(&mut meta, 6, &[(2, 4), (5, 8)], 12)
            };
            meta[field + 4] = if leaf { T_NULL } else { T_STRUCT };
            for at in pending.drain(..) {
                point(&mut meta, at, field);
            }
            if !leaf {
                let children = vector(&mut meta, 2);
                point(&mut meta, field + 8, children);
                pending = vec![children + 4, children + 8];
            }
        }
        let mut stream = (-1i32).to_le_bytes().to_vec();
        stream.extend_from_slice(&(meta.len() as i32).to_le_bytes());
        stream.extend_from_slice(&meta);
        stream.extend_from_slice(&(-1i32).to_le_bytes());
        stream.extend_from_slice(&0i32.to_le_bytes());
        stream
    }

    #[test]
    fn a_schema_that_fans_out_is_refused_not_walked() {
        // 31 levels would be 2^31 fields to walk: refused (by the flatbuffer verifier,
        // which also finds the fields' type tables missing), and promptly.
        for levels in [3, 31] {
            let err = read_stream(&fan_out_stream(levels)).expect_err("fan-out schema");
            assert!(err.contains("Unable to get root as message"), "{err}");
        }
    }

    #[test]
    fn every_single_byte_corruption_is_an_error_or_a_decode_never_a_panic() {
        for pos in 0..FIXTURE.len() {
            for value in [0x00, 0x7f, 0xff] {
                let mut bytes = FIXTURE.to_vec();
                bytes[pos] = value;
                let _ = read_stream(&bytes);
            }
        }
    }
}
